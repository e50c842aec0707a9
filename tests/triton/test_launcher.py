"""The local Triton launcher: environment, start-up errors, clean stop, CLI, new versions."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from orchestrator.triton.client import TritonClient
from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.model_contract import ACTION_OUTPUT, STATE_INPUT
from orchestrator.triton.server_process import SHM_DIR
from orchestrator.triton.triton_env import DEFAULT_ENV, ENV_VAR, LauncherError, find_triton_env
from tests.support.triton import random_observation, tiny_contract, write_tiny_model
from tests.triton.conftest import VERSIONED, WATCH_S


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (the server and its stubs)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def test_finds_the_triton_env_and_reports_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    env = find_triton_env()
    assert env.root == DEFAULT_ENV
    assert env.server.is_file() and env.stub.is_file() and env.libs.is_dir()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(LauncherError, match="nowhere"):
        find_triton_env()
    with pytest.raises(LauncherError, match="no Triton environment"):
        LocalTriton(tmp_path, triton_env=tmp_path / "elsewhere")


def test_stop_leaves_no_process_shared_memory_or_temp_dir(tmp_path: Path) -> None:
    write_tiny_model(tmp_path / "repo", tiny_contract("solo"))
    triton = LocalTriton(tmp_path / "repo")
    work_dir = triton.work_dir
    try:
        triton.start()
        pid = triton.pid
        assert pid is not None
        assert len(group_members(pid)) >= 2  # the server and the model's python stub
        assert list(SHM_DIR.glob(triton.shm_prefix + "*"))
    finally:
        triton.close()
    assert group_members(pid) == []
    assert not list(SHM_DIR.glob(triton.shm_prefix + "*"))
    assert not work_dir.exists()
    assert (tmp_path / "repo" / "solo" / "config.pbtxt").is_file()  # source untouched


def test_a_model_that_cannot_load_fails_start_with_the_log(tmp_path: Path) -> None:
    contract = tiny_contract("broken")
    onnx_path = write_tiny_model(tmp_path / "repo", contract)
    graph = onnx.load(onnx_path)
    graph.graph.input[0].name = "renamed"  # no longer matches the config's input name
    graph.graph.node[-4].input[0] = "renamed"
    onnx.save(graph, onnx_path)
    triton = LocalTriton(tmp_path / "repo", work_dir=tmp_path / "work")
    with pytest.raises(LauncherError, match=STATE_INPUT) as info:
        triton.start(timeout_s=60)
    assert "log tail" in str(info.value)
    assert not triton.is_running()


def test_unknown_model_selection_is_refused(tmp_path: Path) -> None:
    write_tiny_model(tmp_path / "repo", tiny_contract("m"))
    triton = LocalTriton(tmp_path / "repo", models=["other"], work_dir=tmp_path / "work")
    with pytest.raises(LauncherError, match="other"):
        triton.start()
    assert not triton.is_running()


async def test_new_export_is_synced_by_itself_and_served_after_load(
    triton: LocalTriton, source_repo: Path
) -> None:
    contract = tiny_contract(VERSIONED)
    obs = random_observation(contract, 2, seed=4)
    async with TritonClient(triton.grpc_url, timeout_s=10.0) as client:
        before = await client.infer(VERSIONED, obs)
        onnx_v2 = write_tiny_model(source_repo, contract, version=2, seed=99)
        derived = triton.repository / VERSIONED / "2" / "model.onnx"
        for _ in range(200):  # the watcher polls every WATCH_S
            if derived.is_file():
                break
            await asyncio.sleep(WATCH_S)
        # Only the model-control API is needed now: no launcher call.
        await client.load_model(VERSIONED)
        assert await client.is_model_ready(VERSIONED, "2")
        after = await client.infer(VERSIONED, obs)
    expected = ort.InferenceSession(str(onnx_v2)).run([ACTION_OUTPUT], obs)[0]
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(before, after)


async def readline(stream: asyncio.StreamReader, timeout_s: float = 60.0) -> str:
    return (await asyncio.wait_for(stream.readline(), timeout_s)).decode()


async def test_cli_serves_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    contract = tiny_contract("cli_model")
    write_tiny_model(repo, contract)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator.triton.cli",
        "--model-repository", str(repo), "--work-dir", str(tmp_path / "work"),
        "--grpc-port", "0", "--http-port", "0", "--metrics-port", "0",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = await readline(proc.stdout)
        assert line.startswith("tritonserver ready"), line
        grpc_url = line.split("grpc ")[1].split()[0]
        async with TritonClient(grpc_url, timeout_s=10.0) as client:
            obs = random_observation(contract, 1)
            await client.infer("cli_model", obs)
            write_tiny_model(repo, contract, version=2, seed=5)
            proc.send_signal(signal.SIGHUP)
            assert "reloaded" in await readline(proc.stdout)
            assert await client.is_model_ready("cli_model", "2")
            # Its work dir is taken while it runs: another launcher must not touch that server.
            with pytest.raises(LauncherError, match="running on"):
                LocalTriton(repo, work_dir=tmp_path / "work").start()
            assert await client.is_model_ready("cli_model", "2")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert not any(p.name.startswith("local_triton_") and str(proc.pid) in p.name
                   for p in SHM_DIR.iterdir())


def test_auto_ports_move_when_one_is_taken_before_the_server_binds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race between picking a free port and binding it, caused for real with a socket."""
    import socket

    import orchestrator.triton.launcher as launcher

    write_tiny_model(tmp_path / "repo", tiny_contract("m"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real_free_port = launcher.free_port
        monkeypatch.setattr(launcher, "free_port", lambda: next(ports, None) or real_free_port())
        triton = LocalTriton(tmp_path / "repo", work_dir=tmp_path / "work")
        assert triton.http_port == busy
        try:
            triton.start()
            assert triton.is_running() and busy not in (triton.http_port, triton.grpc_port)
        finally:
            triton.close()


def test_a_server_left_by_a_killed_parent_is_stopped_on_the_next_start(tmp_path: Path) -> None:
    """A parent killed hard cannot stop its server: the next start on that work dir does."""
    write_tiny_model(tmp_path / "repo", tiny_contract("m"))
    first = LocalTriton(tmp_path / "repo", work_dir=tmp_path / "work")
    first.start()
    orphan = first.pid
    assert orphan is not None
    first._proc = None  # forget it, as a SIGKILLed parent would
    second = LocalTriton(
        tmp_path / "repo", work_dir=tmp_path / "work",
        http_port=first.http_port, grpc_port=first.grpc_port, metrics_port=first.metrics_port,
    )  # fmt: skip
    try:
        second.start()  # the same ports: only possible once the orphan is gone
        assert second.is_running() and second.pid != orphan
        assert group_members(orphan) == []
        assert not list(SHM_DIR.glob(first.shm_prefix + "*"))
    finally:
        second.close()
        reap_group_if_alive(orphan)


def reap_group_if_alive(pgid: int) -> None:
    if group_members(pgid):
        os.killpg(pgid, signal.SIGKILL)
