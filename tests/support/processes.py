"""Child processes that tests started: stopping them politely, then for sure; freezing
them for real (SIGSTOP keeps a server's sockets open and answers nothing, which is what a
hung server looks like to its clients, unlike a dead one, which refuses)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> int:
    """SIGTERM, up to ``grace_s`` to exit, then SIGKILL; always reaped. Its exit code."""
    proc.terminate()
    try:
        return proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


@contextlib.contextmanager
def stopped(pid: int | None) -> Iterator[None]:
    """`pid` stopped for the block; always let go (SIGCONT) after it, failed or not."""
    assert pid is not None, "the process is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
