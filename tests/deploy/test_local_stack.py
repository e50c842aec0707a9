"""The README's run command, end to end: `python -m local_stack --demo true` in a
child process on an empty model repository. It must export the demo model, start Triton,
the room server and the API, drive a simulated robot through a session, and shut down
cleanly on Ctrl-C (SIGINT) with no process left behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.arena import free_port_run
from tests.support.triton import tiny_contract, write_tiny_model

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def _stack(*args: str) -> Iterator[subprocess.Popen[str]]:
    """`python -m local_stack ARGS` in a process group of its own, so that a Ctrl-C can
    reach the group as a terminal's does. If the test fails first: a Ctrl-C (the stack stops
    its servers, which run in sessions of their own), then SIGKILL to the group."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "local_stack", *args], cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _ctrl_c(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C to the stack's process group; what it printed until it ended."""
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    return rest


def _children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _create_without_a_server_url(output: str, api: int, arena: int) -> None:
    """The banner's create, less its arena_server_url: it goes to the room server the stack
    started (on --arena-port), not to the default's port 8000."""
    body = json.loads(re.search(r"-d '(\{.*\})'", output).group(1))  # type: ignore[union-attr]
    del body["arena_server_url"]
    body["session_id"] = "no-server-url"
    base = f"http://127.0.0.1:{api}"
    created = httpx.post(f"{base}/sessions", json=body, timeout=30)
    assert created.status_code == 200, created.text
    status = httpx.get(f"{base}/sessions/no-server-url", timeout=30).json()
    assert status["rooms"]["arena_server_url"] == f"http://127.0.0.1:{arena}"
    assert httpx.delete(f"{base}/sessions/no-server-url", timeout=30).status_code == 200


def test_a_taken_room_server_port_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    """Another server on --arena-port answered the stack's health check for its own room
    server, and the stack ran against it; a port taken by anything else was a traceback."""
    repository = tmp_path / "model_repository"
    write_tiny_model(repository, tiny_contract("tiny_act", cameras=("front",)))
    api = free_port_run(2)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", api + 1))
        taken.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "local_stack", "--model-repository", str(repository),
             "--triton-url", "127.0.0.1:1", "--port", str(api), "--arena-port", str(api + 1),
             "--export-jobs-dir", str(tmp_path / "jobs")],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"cannot start the room server on 127.0.0.1:{api + 1}" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize(("host", "in_url"), [("127.0.0.2", "127.0.0.2"), ("::1", "[::1]")])
def test_the_banner_names_the_room_server_where_it_listens(
    tmp_path: Path, host: str, in_url: str,
) -> None:
    """The room server listens on the API's host: with one that is not 127.0.0.1, the
    banner's (and a create's default) server URL was 127.0.0.1, where nothing listened.
    An IPv6 address went into URLs unbracketed: the stack waited for its API at
    http://::1:PORT and never came up."""
    repository = tmp_path / "model_repository"
    write_tiny_model(repository, tiny_contract("tiny_act", cameras=("front",)))
    api = free_port_run(2)
    with _stack("--model-repository", str(repository), "--triton-url", "127.0.0.1:1",
                "--host", host, "--port", str(api), "--arena-port", str(api + 1),
                "--export-jobs-dir", str(tmp_path / "jobs")) as proc:
        assert proc.stdout is not None
        output = ""
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            output += line
            if '"arena_server_url"' in line:
                break
            assert time.monotonic() < deadline, output[-2000:]
        url = json.loads(re.search(r"-d '(\{.*\})'", output).group(1))[  # type: ignore[union-attr]
            "arena_server_url"]
        assert url == f"http://{in_url}:{api + 1}", output[-2000:]
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        assert f"Orchestrator API: http://{in_url}:{api}" in output
        assert httpx.get(f"http://{in_url}:{api}/health", timeout=10).status_code == 200
        _ctrl_c(proc)


def test_run_command_sets_up_runs_and_stops_cleanly(tmp_path: Path) -> None:
    repository = tmp_path / "model_repository"
    # API, room server, Triton's three: outside the ephemeral range (see free_port_run).
    api = free_port_run(5)
    arena, triton = api + 1, api + 2
    lines: list[str] = []
    rates: list[float] = []
    descendants: list[psutil.Process] = []
    deadline = time.monotonic() + 240
    with _stack("--demo", "true", "--model-repository", str(repository),
                "--local-triton-dir", str(tmp_path / "triton"), "--port", str(api),
                "--arena-port", str(arena), "--local-triton-port-base", str(triton)) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            descendants = descendants or [p for p in _children_of(proc.pid)
                                          if "tritonserver" in " ".join(p.cmdline())]
            match = re.search(r"commands/s\s+([\d.]+)", line)
            if match:
                rates.append(float(match.group(1)))
                if len(rates) >= 3:
                    break
            assert time.monotonic() < deadline, "no live figures within 240 s"
        _create_without_a_server_url("".join(lines), api, arena)
        tree = _children_of(proc.pid)
        lines.append(_ctrl_c(proc))
    output = "".join(lines)
    assert proc.returncode == 0, output[-3000:]
    # Setup: the empty repository got a demo model, clearly labelled.
    assert (repository / "act_demo" / "config.pbtxt").is_file()
    assert "DEMO" in output and "random weights" in output
    # The banner: docs and a ready-to-paste curl.
    assert f"http://127.0.0.1:{api}/docs" in output
    assert "curl -s -X POST" in output
    # A session was driven: commands flowed at about the model's rate.
    assert rates and max(rates) > 0, output[-2000:]
    assert "stack stopped" in output
    # In order: the sessions closed their rooms before the room server stopped (a Ctrl-C
    # reaching it too took it down first).
    assert "could not delete room" not in output, output[-3000:]
    # Nothing is left: every child of the stack (Triton, its stubs, the room server) is gone.
    time.sleep(0.5)
    alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [p.cmdline() for p in alive]


def test_ctrl_c_during_the_first_start_stops_at_once(tmp_path: Path) -> None:
    """Ctrl-C while the demo model is exported (a terminal sends it to the whole process
    group, the exporter included) was ignored until the whole stack was up, and the
    exporter's interruption a traceback. It must end there, cleanly, with nothing left."""
    repository = tmp_path / "model_repository"
    api = free_port_run(5)
    lines: list[str] = []
    with _stack("--model-repository", str(repository), "--local-triton-dir",
                str(tmp_path / "triton"), "--port", str(api), "--arena-port", str(api + 1),
                "--local-triton-port-base", str(api + 2)) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "exporting a DEMO model" in line:
                break
        time.sleep(1.0)  # inside the exporter's start (torch's import alone takes seconds)
        tree = _children_of(proc.pid)
        assert tree, "the exporter is not running"
        lines.append(_ctrl_c(proc))
    output = "".join(lines)
    assert proc.returncode == 0, output[-3000:]
    assert "interrupted during the demo export" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "Orchestrator API:" not in output  # nothing was started after it
    assert not (repository / "act_demo").exists()
    time.sleep(0.5)
    alive = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [p.cmdline() for p in alive]
