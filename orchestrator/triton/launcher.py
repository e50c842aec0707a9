"""Run a real local Triton server from the ``nvidia-pytriton`` wheel.

Machines without Docker or GPU (development, CI, a laptop) serve the exported
model repository with the ``tritonserver`` binary that ships in the
``nvidia-pytriton`` wheel, installed in its own environment (``.venv-triton``,
numpy<2: the python backend stub breaks under numpy 2). The onnxruntime models
are served by the python backend running ONNX Runtime (see
:mod:`orchestrator.triton.local_repository`).

Python API::

    with LocalTriton("model_repository") as triton:
        client = TritonClient(triton.grpc_url)

Every failure to prepare or start raises :class:`LauncherError` with the
server's log tail. ``sync()`` (or ``watch_s=``, a polling thread) mirrors a new
export into the derived repository; a model load through Triton's
model-control API (``TritonClient.load_model``) then serves the new version.

CLI: ``local-triton`` (:mod:`orchestrator.triton.cli`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from orchestrator.triton.local_repository import (
    DerivedModel,
    RepositoryWatcher,
    copy_if_changed,
    sync_repository,
)
from orchestrator.triton.providers import (
    PROVIDERS_ENV,
    ProviderChoice,
    ProviderError,
    Request,
    detect,
)
from orchestrator.triton.server_process import (
    WorkDirBusy,
    free_port,
    http_ok,
    reap_group,
    remove_shm,
    stop_stale_server,
    write_pidfile,
)
from orchestrator.triton.triton_env import (
    LauncherError,
    TritonEnv,
    find_triton_env,
)

log = logging.getLogger(__name__)

# Servers still running when the interpreter exits (a caller forgot close()).
_running: weakref.WeakSet[LocalTriton] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    for triton in list(_running):
        triton.close()


class LocalTriton:
    """One ``tritonserver`` process serving a derived copy of a model repository.

    Ports are picked once (free ports unless given) and kept across restarts, so
    clients reconnect to the same address. ``work_dir`` holds the derived
    repository, the backend folder and the server log; a temporary one is
    removed by :meth:`close`.
    """

    def __init__(
        self,
        model_repository: str | os.PathLike[str],
        *,
        work_dir: str | os.PathLike[str] | None = None,
        triton_env: str | os.PathLike[str] | TritonEnv | None = None,
        models: Sequence[str] | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        ort_threads: int = 1,
        log_verbose: int = 0,
        python_shm_bytes: int = 16 * 1024 * 1024,
        watch_s: float | None = None,
        ort_providers: Request = "auto",
    ) -> None:
        self.source = Path(model_repository).absolute()
        self.env = triton_env if isinstance(triton_env, TritonEnv) else find_triton_env(triton_env)
        self._temp_dir = None if work_dir else tempfile.mkdtemp(prefix="local-triton-")
        self.work_dir = Path(work_dir or self._temp_dir or ".").absolute()
        self.repository = self.work_dir / "models"
        self.backend_dir = self.work_dir / "backends"
        self.log_path = self.work_dir / "tritonserver.log"
        self.pid_path = self.work_dir / "tritonserver.pid"
        self.only_models = list(models) if models is not None else None
        self._auto_ports = not (http_port or grpc_port or metrics_port)
        self._started_once = False
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.ort_threads = ort_threads
        self.log_verbose = log_verbose
        self.python_shm_bytes = python_shm_bytes
        # Our python backend's shared-memory regions carry this prefix so that a
        # killed server's leftovers can be found and removed.
        self.shm_prefix = f"local_triton_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self.models: list[DerivedModel] = []
        # auto: CUDA when a GPU is present and the Triton env has onnxruntime-gpu, else CPU.
        self.ort_providers: Request = ort_providers
        self.provider_choice: ProviderChoice | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._sync_lock = threading.Lock()
        # watch_s: re-sync by itself every watch_s seconds when the source changed.
        self._watcher = RepositoryWatcher(self.source, self.sync, watch_s) if watch_s else None

    # ---- addresses -------------------------------------------------------
    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ---- repository ------------------------------------------------------
    def sync(self) -> list[DerivedModel]:
        """Re-derive the repository from the source (after a new export).

        Safe while the server runs: only changed files are replaced (by rename).
        Load the models again (:meth:`load` or the client) to pick up new versions.
        """
        with self._sync_lock:
            self.models = sync_repository(self.source, self.repository)
        return self.models

    def _prepare_backend(self) -> None:
        dst = self.backend_dir / "python"
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            copy_if_changed(self.env.python_backend / name, dst / name)
        copy_if_changed(self.env.stub, dst / "triton_python_backend_stub")

    def model_names(self) -> list[str]:
        """The models loaded at start: all derived ones, or those given as ``models``."""
        names = [m.name for m in self.models]
        if self.only_models is None:
            return names
        unknown = sorted(set(self.only_models) - set(names))
        if unknown:
            raise LauncherError(f"models {unknown} are not in {self.source} (have {names})")
        return list(self.only_models)

    # ---- process ---------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [
            str(self.env.server),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.backend_dir}",
            "--model-control-mode=explicit",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            "--exit-on-error=true",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            # Clients may ping (ORCHESTRATOR_TRITON_KEEPALIVE_S) idle or not, as often as
            # they like: by default the server closes a connection for too many pings.
            "--grpc-keepalive-permit-without-calls=1",
            "--grpc-http2-max-pings-without-data=0",
            "--grpc-http2-max-ping-strikes=0",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=false",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            f"--backend-config=python,shm-default-byte-size={self.python_shm_bytes}",
            f"--backend-config=python,shm-growth-byte-size={self.python_shm_bytes}",
            f"--log-verbose={self.log_verbose}",
        ]
        cmd += [f"--load-model={name}" for name in self.model_names()]
        return cmd

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [str(self.env.libs), str(self.env.python_libdir)]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        # The stub finds numpy/onnxruntime through the first `python3` on PATH.
        env["PATH"] = os.pathsep.join([str(self.env.bin_dir), env.get("PATH", "")])
        env["VIRTUAL_ENV"] = str(self.env.root)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        env["LOCAL_TRITON_ORT_THREADS"] = str(self.ort_threads)
        if self.provider_choice is not None:
            env[PROVIDERS_ENV] = ",".join(self.provider_choice.providers)
        return env

    def choose_providers(self) -> ProviderChoice:
        """Detect once (GPU, the Triton env's onnxruntime) and report the choice."""
        if self.provider_choice is None:
            try:
                self.provider_choice = detect(self.env.bin_dir / "python", self.ort_providers)
            except ProviderError as exc:
                raise LauncherError(str(exc)) from exc
            log.info("local Triton runs ONNX Runtime on %s (%s): %s",
                     self.provider_choice.device.upper(),
                     ", ".join(self.provider_choice.providers), self.provider_choice.reason)
        return self.provider_choice

    def info(self) -> dict[str, object]:
        """Addresses, models and the ONNX Runtime device, for start-up banners and tests."""
        choice = self.provider_choice
        return {
            "grpc_url": self.grpc_url, "http_url": self.http_url,
            "metrics_url": self.metrics_url, "log": str(self.log_path),
            "models": [m.name for m in self.models],
            "device": choice.device if choice else None,
            "onnxruntime_providers": list(choice.providers) if choice else None,
            "device_reason": choice.reason if choice else None,
        }

    def start(self, timeout_s: float = 60.0) -> LocalTriton:
        """Derive the repository, start the server and wait until it and its models are ready."""
        if self.is_running():
            return self
        try:
            stop_stale_server(self.pid_path, self.repository)
        except WorkDirBusy as exc:
            raise LauncherError(str(exc)) from exc
        self.sync()
        self._prepare_backend()
        self.choose_providers()
        for attempt in range(3):
            try:
                self._spawn(timeout_s)
                break
            except LauncherError as exc:
                # A free port picked by us may be taken before the server binds it;
                # never move ports after a successful start (clients know them).
                if not (self._auto_ports and not self._started_once and attempt < 2
                        and "already in use" in str(exc)):
                    raise
                log.warning("port taken before tritonserver bound it; trying new ports")
                self.http_port, self.grpc_port, self.metrics_port = (
                    free_port(), free_port(), free_port()
                )
        self._started_once = True
        if self._watcher is not None:
            self._watcher.start()
        _running.add(self)
        return self

    def _spawn(self, timeout_s: float) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - the child process owns it
        try:
            self._proc = subprocess.Popen(
                self.command(),
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                start_new_session=True,  # its own process group: stubs go down with it
            )
        finally:
            log_file.close()
        write_pidfile(self.pid_path, self._proc.pid, self.shm_prefix)
        log.info("tritonserver pid %d: grpc %s http %s", self._proc.pid, self.grpc_url,
                 self.http_url)
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        names = self.model_names()
        while True:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise LauncherError(
                    f"tritonserver exited with code {code} during start-up; log tail:\n"
                    + self.log_tail()
                )
            if self._http_ok("/v2/health/ready") and all(
                self._http_ok(f"/v2/models/{n}/ready") for n in names
            ):
                return
            if time.monotonic() > deadline:
                raise LauncherError(
                    f"tritonserver not ready after {timeout_s:.0f} s; log tail:\n"
                    + self.log_tail()
                )
            time.sleep(0.05)

    def _http_ok(self, path: str, method: str = "GET", timeout_s: float = 2.0) -> bool:
        return http_ok(self.http_url + path, method, timeout_s)

    def load(self, names: Sequence[str] | None = None, timeout_s: float = 60.0) -> None:
        """Re-sync the repository and (re)load models through the model-control API."""
        self.sync()
        for name in names or self.model_names():
            if not self._http_ok(f"/v2/repository/models/{name}/load", "POST", timeout_s):
                raise LauncherError(f"loading model {name!r} failed; log tail:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; then reap stubs and shared memory."""
        if self._watcher is not None:
            self._watcher.stop()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver %d ignored SIGTERM for %.0f s; killing", proc.pid,
                            timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._reap(proc.pid)

    def kill(self) -> None:
        """SIGKILL the server (a crash, for tests): no graceful shutdown at all."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self.stop()

    def _reap(self, pgid: int) -> None:
        reap_group(pgid)  # stubs live in the server's group; after a crash they may outlive it
        remove_shm(self.shm_prefix)
        self.pid_path.unlink(missing_ok=True)

    def close(self) -> None:
        _running.discard(self)
        self.stop()
        if self._temp_dir:
            import shutil

            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
