"""Start the room server as a child process on a loopback port (tests, benches, local runs).

`LocalArenaServer` is a real separate process (`python -m arena_server`), so its owner can kill
it like a crash (SIGKILL) and start it again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

STARTUP_TIMEOUT_S = 30.0


class ArenaStartError(RuntimeError):
    """The room server could not be started (its port taken, an early exit)."""


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free loopback ports, for a server to bind later.

    They are taken below the kernel's ephemeral range: a port found with bind(0) is an
    ephemeral one, which any outgoing connection may take before the server binds it (a
    CI run failed so: "Socket '127.0.0.1:41136' already in use")."""
    high = _ephemeral_low() - count
    for _ in range(200):
        base = random.randrange(20000, high)
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise RuntimeError(f"no {count} consecutive free ports in 20000-{high}")


def free_port() -> int:
    return free_port_run(1)


def url_host(host: str) -> str:
    """``host`` as the host part of a URL this machine reaches a server bound to it by: a
    wildcard bind is reached on loopback, an IPv6 literal goes in brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def wait_healthy(
    base_url: str, timeout_s: float = STARTUP_TIMEOUT_S,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ArenaStartError(
                f"arena server exited with code {proc.returncode} on startup")
        try:
            r = httpx.get(f"{base_url}/health", timeout=1.0)
            if r.status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"arena server at {base_url} not healthy after {timeout_s}s: {last!r}")


class LocalArenaServer:
    """`python -m arena_server` on 127.0.0.1:port; start/kill/restart keep the same port."""

    def __init__(
        self, port: int | None = None, log_level: str = "warning", host: str = "127.0.0.1",
        prefix: str = "",
    ) -> None:
        self.host = host
        self.prefix = prefix.rstrip("/")  # e.g. /api, as the public server is deployed
        self.port = port or free_port()
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}{self.prefix}"

    def start(self) -> LocalArenaServer:
        assert self.proc is None, "already running"
        # Another server already there would answer the health check for ours.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise ArenaStartError(
                    f"cannot start the room server on {self.host}:{self.port}: "
                    f"{exc.strerror or exc}") from exc
        cmd = [sys.executable, "-m", "arena_server", "--host", self.host,
               "--port", str(self.port), "--log-level", self.log_level,
               *(("--prefix", self.prefix) if self.prefix else ())]
        # Its own session: a Ctrl-C in the terminal reaches whoever started it, who stops it
        # after closing what uses it (sessions delete their rooms first).
        self.proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     start_new_session=True)
        try:
            wait_healthy(self.base_url, proc=self.proc)
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

    async def astart(self) -> LocalArenaServer:
        """start() off the event loop (it blocks while waiting for /health)."""
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> LocalArenaServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
