"""The RobotHub front-end, call for call: a browser origin and its preflights, the API under
/api, its create body (transport_server_url, policy_type, language_instruction, a hub repo
id never exported before), list polling, start, and a robot that speaks the front-end's
SO-100 joint names, over the project's room server deployed under /api as the public one is.

Real parts only: an offline hub cache laid out as huggingface_hub leaves it
(HF_HUB_OFFLINE=1), the export worker in its own process (the real exporter), a local
Triton that picks up what the worker writes, WebRTC video from the simulated robot.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from arena_server.launcher import LocalArenaServer
from orchestrator.settings import Settings
from orchestrator.triton.launcher import LocalTriton
from sim_robot.robot import SimRobot
from tests.support.hub import HubCheckpoint, add_repo, checkpoint_files, make_hub_checkpoint
from tests.support.orchestrator import Orchestrator, run_orchestrator, wait_for
from tests.support.processes import stop_process
from tests.support.triton import local_triton

FRONT_END_JOINTS = ("Rotation", "Pitch", "Elbow", "Wrist_Pitch", "Wrist_Roll", "Jaw")
ORIGIN = "http://localhost:5173"
EXPORT_TIMEOUT_S = 240.0  # the real exporter on 2 shared cores, plus Triton's load


@dataclass
class Stack:
    hub: HubCheckpoint
    repository: Path
    jobs: Path
    triton: LocalTriton
    arena: LocalArenaServer


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("frontend")
    hub = make_hub_checkpoint(root / "hf")
    # A hub repo that passes the create-time check (an ACT config) but cannot be exported.
    broken = checkpoint_files(hub.checkpoint.path)
    broken["model.safetensors"] = b"not a safetensors file"
    add_repo(hub.hf_home, "tinyorg/broken_act", broken)
    # A repo that is not an ACT checkpoint.
    config = json.loads((hub.checkpoint.path / "config.json").read_text())
    add_repo(hub.hf_home, "tinyorg/diffusion", {"config.json": json.dumps(
        {**config, "type": "diffusion"}), "model.safetensors": b"x"})
    repository, jobs = root / "model_repository", root / "jobs"
    repository.mkdir()
    jobs.mkdir()
    env = {**os.environ, **hub.env(), "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "export.worker", "--jobs", str(jobs), "--repository",
         str(repository)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (jobs / "worker.alive").exists():
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            assert time.monotonic() < deadline, "export worker did not start"
            time.sleep(0.1)
        with (local_triton(repository, work_dir=root / "triton", watch_s=0.5) as triton,
              LocalArenaServer(prefix="/api") as arena):
            yield Stack(hub, repository, jobs, triton, arena)
    finally:
        stop_process(worker, 10)
        shutil.rmtree(root / "triton", ignore_errors=True)


@pytest.fixture
async def api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Orchestrator]:
    for key, value in stack.hub.env().items():  # the orchestrator's own hub look-ups
        monkeypatch.setenv(key, value)
    settings = Settings(triton_url=stack.triton.grpc_url, triton_timeout_s=5.0,
                        latency_prior_s=0.05, export_jobs_dir=stack.jobs,
                        export_timeout_s=EXPORT_TIMEOUT_S, model_load_timeout_s=60.0)
    async with run_orchestrator(settings) as orchestrator:
        yield orchestrator


class FrontEnd:
    """What the page does: every call from a browser origin, under the /api base URL."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.http = httpx.AsyncClient(base_url=f"{orchestrator.base_url}/api", timeout=30,
                                      headers={"Origin": ORIGIN})

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        if body is not None:  # a JSON POST from a page: the browser asks first
            preflight = await self.http.options(path, headers={
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "content-type"})
            assert preflight.status_code == 200, preflight.text
            assert preflight.headers["access-control-allow-origin"] in ("*", ORIGIN)
        response = await self.http.request(method, path, json=body)
        assert response.headers.get("access-control-allow-origin") in ("*", ORIGIN), path
        return response

    async def listed(self, session_id: str) -> dict[str, Any] | None:
        response = await self.call("GET", "/sessions")
        assert response.status_code == 200, response.text
        return next((s for s in response.json() if s["session_id"] == session_id), None)

    def body(self, session_id: str, arena: LocalArenaServer, policy_path: str,
             **extra: Any) -> dict[str, Any]:
        return {"session_id": session_id, "policy_path": policy_path, "camera_names": ["front"],
                "transport_server_url": arena.base_url, "workspace_id": str(uuid.uuid4()),
                "policy_type": "act", **extra}


async def _poll_until(front: FrontEnd, session_id: str, wanted: str, timeout_s: float,
                      seen: list[str]) -> dict[str, Any]:
    """Poll the list as the page does (faster than its 5 s, to see the states)."""
    deadline = time.monotonic() + timeout_s
    while True:
        entry = await front.listed(session_id)
        assert entry is not None, f"{session_id} vanished from the list"
        if not seen or seen[-1] != entry["status"]:
            seen.append(entry["status"])
        if entry["status"] == wanted:
            return entry
        assert entry["status"] != "error", entry
        assert time.monotonic() < deadline, f"still {entry['status']}: {entry}"
        await asyncio.sleep(0.5)


def _robot(created: dict[str, Any], arena: LocalArenaServer) -> SimRobot:
    return SimRobot(
        arena.base_url, created["workspace_id"], joint_input=created["joint_input_room_id"],
        joint_output=created["joint_output_room_id"], cameras=created["camera_room_ids"],
        joints=FRONT_END_JOINTS, rate=30, fps=10, width=160, height=120,
        initial={j: float(i * 5) for i, j in enumerate(FRONT_END_JOINTS)},
    )


async def test_front_end_drives_a_robot_with_a_hub_model_exported_on_demand(
    api: Orchestrator, stack: Stack
) -> None:
    front = FrontEnd(api)
    assert (await front.call("GET", "/")).json()  # the page's server check
    assert (await front.call("GET", "/health")).status_code == 200
    sid = f"fe-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    response = await front.call("POST", "/sessions", front.body(
        sid, stack.arena, stack.hub.repo_id, language_instruction="pick up the red cube"))
    assert response.status_code == 200, response.text
    created = response.json()
    assert set(created) == {"workspace_id", "camera_room_ids", "joint_input_room_id",
                            "joint_output_room_id"}
    assert time.monotonic() - started < 15, "create must answer before the export is done"
    first = await front.listed(sid)
    assert first is not None and first["status"] == "initializing"
    assert first["initialization"]["step"], first
    assert first["policy_type"] == "act"

    async with _robot(created, stack.arena) as robot:  # joins the rooms the create made
        seen: list[str] = []
        ready = await _poll_until(front, sid, "ready", EXPORT_TIMEOUT_S, seen)
        assert seen[0] == "initializing" and seen[-1] == "ready"
        assert ready["stats"]["policy_type"] == "act"
        assert (await front.call("POST", f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(robot.received) >= 60, 60, "60 commands at the robot")
        arrivals = np.array([c.arrived_at for c in list(robot.received)[-40:]])
        median_period = float(np.median(np.diff(arrivals)))
        assert 0.5 / 30 < median_period < 2.0 / 30, median_period
        names = set().union(*(c.values for c in robot.received))
        assert names == set(FRONT_END_JOINTS), names  # answered in the robot's own names

        status = (await front.call("GET", f"/sessions/{sid}")).json()
        assert status["status"] == "running" and status["policy_type"] == "act"
        assert status["language_instruction"] == "pick up the red cube"
        assert status["stats"]["language_instruction"]["used"] is False
        mapping = status["joint_mapping"]
        assert mapping["robot_to_model"]["Rotation"] == "shoulder_pan.pos"
        assert mapping["robot_to_model"]["Jaw"] == "gripper.pos"
        assert mapping["unmapped"] == [] and mapping["missing"] == []
        model = status["inference_stats"]["model"]
        info = await api.manager.models.contract(model)
        assert info.info["source_repo_id"] == stack.hub.repo_id
        assert info.info["source_revision"] == stack.hub.sha

        # A second session naming the same repo reuses the model: ready at once. It comes
        # as the page's "Custom Model" (policy_type "custom"): the checkpoint is ACT.
        sid2 = f"fe-{uuid.uuid4().hex[:6]}"
        again = await front.call("POST", "/sessions", front.body(
            sid2, stack.arena, f"{stack.hub.repo_id}@main", policy_type="custom"))
        assert again.status_code == 200, again.text
        second = (await front.call("GET", f"/sessions/{sid2}")).json()
        assert second["status"] == "ready" and second["inference_stats"]["model"] == model
        assert second["policy_type"] == "act"
        assert sorted(p.name for p in (stack.repository / model).iterdir()
                      if p.is_dir()) == ["1"]

        await front.call("POST", f"/sessions/{sid}/stop")
        for session_id in (sid, sid2):
            assert (await front.call("DELETE", f"/sessions/{session_id}")).status_code == 200


async def test_racing_creates_export_once_and_a_failed_export_touches_no_one(
    api: Orchestrator, stack: Stack
) -> None:
    """Two creates of a repo at a revision never exported: one export, both sessions get
    it. A repo that passes the create check but fails to export: that session is in error
    with the exporter's reason, and the others carry on."""
    front = FrontEnd(api)
    policy = f"{stack.hub.repo_id}@{stack.hub.sha[:10]}"
    ids = [f"race-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    answers = await asyncio.gather(*(front.call("POST", "/sessions", front.body(
        sid, stack.arena, policy)) for sid in ids))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    bad = f"bad-{uuid.uuid4().hex[:6]}"
    assert (await front.call("POST", "/sessions", front.body(
        bad, stack.arena, "tinyorg/broken_act"))).status_code == 200
    for sid in ids:
        await _poll_until(front, sid, "ready", EXPORT_TIMEOUT_S, [])
    models = {(await front.call("GET", f"/sessions/{sid}")).json()["inference_stats"]["model"]
              for sid in ids}
    assert len(models) == 1
    (model,) = models
    assert sorted(p.name for p in (stack.repository / model).iterdir() if p.is_dir()) == ["1"]
    jobs = [json.loads(p.read_text()) for p in stack.jobs.glob("*.job.json*")] + [
        json.loads(p.read_text()) for p in stack.jobs.glob("*.running")]
    results = [json.loads(p.read_text()) for p in stack.jobs.glob("*.result.json")]
    assert sum(r.get("model") == model for r in results) == 1, (jobs, results)

    async def failed() -> bool:
        entry = await front.listed(bad)
        return entry is not None and entry["status"] == "error"

    await wait_for(failed, EXPORT_TIMEOUT_S, "the broken repo's session in error")
    entry = await front.listed(bad)
    assert entry is not None and "export of tinyorg/broken_act failed" in entry["error_message"]
    assert "\n" not in entry["error_message"]
    for sid in ids:  # untouched
        assert (await front.listed(sid) or {}).get("status") == "ready"
    for sid in (*ids, bad):
        assert (await front.call("DELETE", f"/sessions/{sid}")).status_code == 200


@pytest.mark.parametrize(("policy_path", "expected"), [
    ("tinyorg/no_such_repo", "tinyorg/no_such_repo"),
    ("tinyorg/tiny_act@0123456789abcdef0123456789abcdef01234567", "0123456789"),
    ("tinyorg/tiny_act@no-such-branch", "no-such-branch"),
    ("tinyorg/diffusion", "diffusion"),
    ("custom:tinyorg/diffusion", "not an ACT checkpoint"),  # "Custom Model", not ACT
    ("not a repo", "policy_path"),
])
async def test_bad_policy_paths_create_nothing(
    api: Orchestrator, stack: Stack, policy_path: str, expected: str
) -> None:
    front = FrontEnd(api)
    sid = f"badp-{uuid.uuid4().hex[:6]}"
    policy_type, _, policy_path = policy_path.rpartition(":")
    body = front.body(sid, stack.arena, policy_path, policy_type=policy_type or "act")
    response = await front.call("POST", "/sessions", body)
    assert 400 <= response.status_code < 500, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and expected in detail, detail
    assert await front.listed(sid) is None
    async with httpx.AsyncClient(base_url=stack.arena.base_url) as arena:
        rooms = await arena.get(f"/robotics/workspaces/{body['workspace_id']}/rooms")
        assert rooms.json()["rooms"] == []
