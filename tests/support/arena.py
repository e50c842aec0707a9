"""Run the Arena-compatible room server for tests: as a subprocess or in a thread.

`ArenaServerProcess` (arena_server.launcher.LocalArenaServer) is a real separate process on a
free loopback port, so a test can kill it (a real server crash) and start it again on the same
port. `ArenaServerThread` runs uvicorn in a background thread of the test process: cheaper,
for tests that never restart the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from types import TracebackType

import uvicorn

from arena_server.launcher import LocalArenaServer, free_port, free_port_run, wait_healthy
from arena_server.server import create_app, uvicorn_config_kwargs

ArenaServerProcess = LocalArenaServer
__all__ = ["ArenaServerProcess", "ArenaServerThread", "arena_server_process",
           "arena_server_thread", "free_port", "free_port_run", "wait_healthy"]


class ArenaServerThread:
    """uvicorn + create_app() in a daemon thread with its own event loop, on a free port."""

    def __init__(self, **app_kwargs: float) -> None:
        """app_kwargs go to create_app() (e.g. a short sweep_interval_s for the sweep test)."""
        self.app_kwargs = app_kwargs
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
        config = uvicorn.Config(create_app(**self.app_kwargs), log_level="warning", lifespan="on",
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
async def arena_server_thread(**app_kwargs: float) -> AsyncIterator[ArenaServerThread]:
    """Async flavour: start/stop run off the event loop so they never block it."""
    server = ArenaServerThread(**app_kwargs)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
