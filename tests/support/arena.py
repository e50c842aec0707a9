"""Run the Arena-compatible room server for tests: as a subprocess or in a thread.

`ArenaServerProcess` is a real separate process on a free loopback port, so a test can kill it
(a real server crash) and start it again on the same port. `ArenaServerThread` runs uvicorn in a
background thread of the test process: cheaper, for tests that never restart the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import httpx
import uvicorn

from arena_server.server import create_app, uvicorn_config_kwargs

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base_url: str, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{base_url}/health", timeout=1.0)
            if r.status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"arena server at {base_url} not healthy after {timeout_s}s: {last!r}")


class ArenaServerProcess:
    """`python -m arena_server` on 127.0.0.1:port; start/kill/restart keep the same port."""

    def __init__(self, port: int | None = None, log_level: str = "warning") -> None:
        self.port = port or free_port()
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ArenaServerProcess:
        assert self.proc is None, "already running"
        cmd = [sys.executable, "-m", "arena_server", "--host", "127.0.0.1",
               "--port", str(self.port), "--log-level", self.log_level]
        self.proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_healthy(self.base_url)
        except BaseException:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL: the way a crashed server goes, sockets dropped without close frames."""
        self._stop(signal.SIGKILL)

    def stop(self) -> None:
        self._stop(signal.SIGTERM)

    def restart(self) -> None:
        self.kill()
        self.start()

    def _stop(self, sig: signal.Signals) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def __enter__(self) -> ArenaServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ArenaServerThread:
    """uvicorn + create_app() in a daemon thread with its own event loop, on a free port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ArenaServerThread:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(create_app(), log_level="warning", lifespan="on",
                                **uvicorn_config_kwargs())
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name=f"arena-server-{self.port}", daemon=True,
        )
        self._thread.start()
        try:
            wait_healthy(self.base_url)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> ArenaServerThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def arena_server_process(port: int | None = None) -> Iterator[ArenaServerProcess]:
    with ArenaServerProcess(port) as server:
        yield server


@contextlib.asynccontextmanager
async def arena_server_thread() -> AsyncIterator[ArenaServerThread]:
    """Async flavour: start/stop run off the event loop so they never block it."""
    server = ArenaServerThread()
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
