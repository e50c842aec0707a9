"""Stopping a child process that tests started: politely, then for sure."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 10.0) -> int:
    """SIGTERM, up to ``grace_s`` to exit, then SIGKILL; always reaped. Its exit code."""
    proc.terminate()
    try:
        return proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)
