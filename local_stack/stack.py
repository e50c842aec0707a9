"""``python -m local_stack`` (``make run``): the whole stack on this machine.

Exports a demo model when the repository is empty, starts the local Triton server
(python backend + ONNX Runtime, from ``.venv-triton``), the local Arena room server and
the orchestrator API; ``--demo true`` also drives a simulated robot through a session and
shows live figures. Ctrl-C stops everything; no process is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Generator
from pathlib import Path

import httpx
import uvicorn

from arena_server.launcher import ArenaStartError, LocalArenaServer, url_host
from orchestrator.api.app import create_app
from orchestrator.settings import Settings, settings_from_cli
from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.model_contract import parse_config
from orchestrator.triton.triton_env import LauncherError

log = logging.getLogger("local_stack.stack")
DEMO_MODEL = "act_demo"


class StackError(RuntimeError):
    """A part of the stack could not be set up: said in one line, not a traceback."""


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the stack owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def repository_models(repository: Path) -> list[str]:
    if not repository.is_dir():
        return []
    return sorted(p.name for p in repository.iterdir() if (p / "config.pbtxt").is_file())


def ensure_model(repository: Path) -> list[str]:
    """Export the demo model (random weights, labelled demo) when the repository is empty.
    Runs the exporter in a child process: the orchestrator itself never imports torch."""
    models = repository_models(repository)
    if models:
        return models
    log.warning("model repository %s is empty: exporting a DEMO model %r with random weights "
                "(not a trained policy)", repository, DEMO_MODEL)
    subprocess.run(
        [sys.executable, "-m", "export.demo", "--repository", str(repository), "--name",
         DEMO_MODEL],
        check=True,
    )
    return repository_models(repository)


async def _wait_http(url: str, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready at {url} within {timeout_s:.0f} s")


@contextlib.asynccontextmanager
async def local_triton(settings: Settings) -> AsyncIterator[str]:
    if settings.triton_url:
        # Exports (the demo model, hub ids) still go to this machine's repository: that
        # server sees them only if it serves the same folder.
        log.warning("using the Triton server at %s: models are exported into %s, which it "
                    "must serve", settings.triton_url, settings.model_repository.resolve())
        yield settings.triton_url
        return
    base = settings.local_triton_port_base
    settings.local_triton_dir.mkdir(parents=True, exist_ok=True)
    # watch_s: a model exported while the stack runs is synced into the served repository;
    # loading it is then one model-control call (POST /v2/repository/models/NAME/load).
    server = LocalTriton(settings.model_repository, work_dir=settings.local_triton_dir,
                         http_port=base, grpc_port=base + 1, metrics_port=base + 2,
                         watch_s=1.0)
    await asyncio.to_thread(server.start)
    log.info("local Triton ready: gRPC %s, HTTP %s, metrics %s (log %s)",
             server.grpc_url, server.http_url, server.metrics_url, server.log_path)
    try:
        yield server.grpc_url
    finally:
        await asyncio.to_thread(server.close)


@contextlib.asynccontextmanager
async def local_arena(settings: Settings) -> AsyncIterator[None]:
    if not settings.start_arena:
        yield
        return
    # On the API's host: pages and robots on other machines reach it as they reach the API.
    server = LocalArenaServer(port=settings.arena_port, host=settings.host)
    await server.astart()
    log.info("local room server ready on %s", server.base_url)
    try:
        yield
    finally:
        await server.astop()


@contextlib.asynccontextmanager
async def export_worker(settings: Settings) -> AsyncIterator[Path | None]:
    """The export worker for hub ids and folders named by sessions (the project's export
    environment: this interpreter has the exporter). None when the user set their own."""
    if settings.export_jobs_dir is not None:
        yield settings.export_jobs_dir
        return
    jobs = settings.local_triton_dir.parent / "export-jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "export.worker", "--jobs", str(jobs),
                             "--repository", str(settings.model_repository)])
    log.info("export worker started (jobs %s)", jobs)
    try:
        yield jobs
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()


def banner(settings: Settings, models: list[str]) -> str:
    api = f"http://{url_host(settings.host)}:{settings.port}"
    model = models[0] if models else "NAME"
    cameras = '["front"]'
    config = settings.model_repository / model / "config.pbtxt"
    if config.is_file():
        with contextlib.suppress(Exception):
            params = parse_config(config.read_text()).parameters
            cameras = params["cameras"].string_value
    key = ' -H "X-API-Key: $ORCHESTRATOR_API_KEY"' if settings.api_key else ""
    return (
        f"\nOrchestrator API: {api}   docs: {api}/docs   metrics: {api}/metrics\n"
        f"Console: {api}/console\n"
        f"Models: {', '.join(models)}\nCreate a session:\n"
        f"  curl -s -X POST {api}/sessions -H 'Content-Type: application/json'{key} \\\n"
        f"    -d '{{\"session_id\": \"robot1\", \"policy_path\": \"{model}\", "
        f"\"camera_names\": {cameras}, \"arena_server_url\": "
        f"\"{settings.arena_default_url}\"}}'\n"
        f"  curl -s -X POST {api}/sessions/robot1/start{' ' + key.strip() if key else ''}\n"
    )


async def run_stack(settings: Settings, stop: asyncio.Event) -> None:
    """Start the parts in order and serve until ``stop``. A stop during the start ends it
    after the part under way (each is bounded), not once everything is up."""
    try:
        models = await asyncio.to_thread(ensure_model, settings.model_repository)
    except subprocess.CalledProcessError as exc:
        if stop.is_set():  # Ctrl-C reached the exporter too (one process group)
            log.info("interrupted during the demo export")
            return
        raise StackError(f"the demo export failed (exit code {exc.returncode})") from exc
    async with contextlib.AsyncExitStack() as parts:
        triton_url = await parts.enter_async_context(local_triton(settings))
        jobs: Path | None = None
        if not stop.is_set():
            await parts.enter_async_context(local_arena(settings))
        if not stop.is_set():
            jobs = await parts.enter_async_context(export_worker(settings))
        if stop.is_set():
            log.info("interrupted while starting")
            return
        update: dict[str, object] = {"triton_url": triton_url, "export_jobs_dir": jobs}
        if settings.start_arena and "arena_default_url" not in settings.model_fields_set:
            # A create that names no server goes to the one started here.
            update["arena_default_url"] = f"http://{url_host(settings.host)}:{settings.arena_port}"
        app_settings = settings.model_copy(update=update)
        server = QuietServer(uvicorn.Config(create_app(app_settings), host=settings.host,
                                        port=settings.port, log_level="warning"))
        serving = asyncio.create_task(server.serve(), name="api")
        try:
            await _wait_http(f"http://{url_host(settings.host)}:{settings.port}/health", 30,
                             "API")
            print(banner(app_settings, models), flush=True)  # noqa: T201 - the CLI's output
            if settings.demo:
                from local_stack.demo import run_demo

                await run_demo(app_settings, models[0], stop)
            else:
                await stop.wait()
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(serving, 15)
    log.info("stack stopped")


def main(argv: list[str] | None = None) -> None:
    settings = settings_from_cli(argv if argv is not None else sys.argv[1:], "stack")
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_stack(settings, stop)

    try:
        asyncio.run(_main())
    except (ArenaStartError, LauncherError, StackError) as exc:
        # A port taken, a server that would not start: the reason, not a traceback.
        log.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    main()
