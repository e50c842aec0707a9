"""Process hygiene for the local tritonserver: pid file, stale servers, leftovers.

The server runs in its own process group (its python-backend stubs too), so a
whole server is one group to signal. A pid file in the work dir lets the next
start stop a server left behind by a killed parent (same work dir, same ports).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

SHM_DIR = Path("/dev/shm")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkDirBusy(RuntimeError):
    """Another live process runs a server on this work dir."""


def write_pidfile(path: Path, pid: int, shm_prefix: str) -> None:
    record = {"pid": pid, "parent": os.getpid(), "shm_prefix": shm_prefix}
    path.write_text(json.dumps(record))


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def reap_group(pgid: int) -> None:
    """SIGKILL whatever is left of a server's process group (stubs outliving a crash)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def remove_shm(prefix: str) -> None:
    for path in SHM_DIR.glob(prefix + "*"):
        path.unlink(missing_ok=True)


def stop_stale_server(pidfile: Path, repository: Path, timeout_s: float = 10.0) -> bool:
    """Stop the server a previous run left on this work dir; True if there was one.

    Only a process whose command line names this very derived repository is
    touched (a recycled pid belonging to something else is left alone), and only
    when the process that started it is gone: a live owner raises WorkDirBusy.
    """
    try:
        record = json.loads(pidfile.read_text())
        pid, parent = int(record["pid"]), int(record["parent"])
        prefix = str(record["shm_prefix"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    marker = f"--model-repository={repository}"
    found = _alive(pid) and marker in _cmdline(pid)
    if found and parent != os.getpid() and _alive(parent):
        raise WorkDirBusy(
            f"tritonserver {pid} of process {parent} is running on {repository.parent}; "
            "stop it or use another work dir"
        )
    if found:
        log.warning("stopping tritonserver %d left behind by an earlier run", pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        reap_group(pid)
        while _alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
    remove_shm(prefix)
    pidfile.unlink(missing_ok=True)
    return found


def http_ok(url: str, method: str = "GET", timeout_s: float = 2.0) -> bool:
    """True when the server answers ``url`` with 200 (Triton's health and model-control
    endpoints); False when it answers otherwise or not at all."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
