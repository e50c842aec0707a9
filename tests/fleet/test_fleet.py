"""Sessions in Ray workers, end to end: a local Ray instance with two session workers, the
API on uvicorn as the Ray driver, a real Triton and room server, simulated robots.

Faults are real: a worker's process is killed with SIGKILL (Ray restarts it), a second
API process joins the same cluster."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ray
from prometheus_client.parser import text_string_to_metric_families

from bench.registry_bench import measure
from orchestrator.fleet.registry import Registry
from orchestrator.fleet.router import FleetRouter
from orchestrator.fleet.worker import worker_name
from orchestrator.triton.launcher import LocalTriton
from tests.support.arena import ArenaServerProcess, free_port
from tests.support.orchestrator import Orchestrator, wait_for
from tests.support.processes import stop_process
from tests.support.rooms import robot_for, send_emergency_stop

WIDE = {f"{j}.pos": (-1e4, 1e4) for j in
        ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")}


def body(sid: str, arena: ArenaServerProcess) -> dict[str, Any]:
    return {"session_id": sid, "policy_path": "tiny_act", "camera_names": ["front"],
            "arena_server_url": arena.base_url, "joint_limits": WIDE, "max_step": 1e6}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def router(orch: Orchestrator) -> FleetRouter:
    manager = orch.app.state.manager
    assert isinstance(manager, FleetRouter)
    return manager


def owner(orch: Orchestrator, sid: str) -> int:
    record = router(orch).registry.get(sid)
    assert record is not None
    return record.owner


async def test_sessions_run_in_workers_through_the_api(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    health = (await fleet.http.get("/health")).json()
    assert set(health["workers"]) == {worker_name(0), worker_name(1)}
    assert all(w["alive"] for w in health["workers"].values()), health
    api_pid = os.getpid()
    assert all(w["pid"] != api_pid for w in health["workers"].values())
    # The workers' ticks run at the priority the API's process has, not at the nice 15 Ray
    # starts its worker processes at by default.
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert all(w["control_priority"] == {"nice_requested": None, "nice": own,
                                         "realtime_requested": None, "realtime": None,
                                         "error": None}
               for w in health["workers"].values()), health

    a, b = new_id("fa"), new_id("fb")
    created_a = await fleet.create_session(**body(a, arena))
    created_b = await fleet.create_session(**body(b, arena))
    # Least loaded first: one session on each worker.
    assert {owner(fleet, a), owner(fleet, b)} == {0, 1}
    async with robot_for(created_a, arena.base_url) as robot_a, \
            robot_for(created_b, arena.base_url) as robot_b:
        for sid in (a, b):
            response = await fleet.http.post(f"/sessions/{sid}/start")
            assert response.status_code == 200 and response.json()["status"] == "running"
        await wait_for(lambda: len(robot_a.received) >= 30 and len(robot_b.received) >= 30,
                       30, "commands from both workers")
        status = await fleet.status(a)
        assert status["status"] == "running"
        assert status["stats"]["commands_sent"] >= 30
        assert status["stats"]["worker"]["name"] == worker_name(owner(fleet, a))
        assert status["stats"]["worker"]["pid"] != api_pid
        listed = {s["session_id"]: s["status"] for s in (await fleet.http.get("/sessions")).json()}
        assert listed[a] == listed[b] == "running"
        queue = (await fleet.http.get(f"/debug/sessions/{a}/queue")).json()
        assert "data_status" in queue
        # Each worker's per-session series reach the API's /metrics, labelled by worker.
        scraped = parse_metrics((await fleet.http.get("/metrics")).text)
        for sid in (a, b):
            sent = scraped[("orchestrator_commands_sent_total", sid)]
            assert sent["worker"] == worker_name(owner(fleet, sid)) and sent["value"] >= 30
            assert ("orchestrator_tick_jitter_seconds_count", sid) in scraped

        response = await fleet.http.post(f"/sessions/{a}/stop")
        assert response.json()["status"] == "stopped"
        await asyncio.sleep(0.3)
        count = len(robot_a.received)
        await asyncio.sleep(0.5)
        assert len(robot_a.received) == count
    for sid in (a, b):
        assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200
        assert (await fleet.http.get(f"/sessions/{sid}")).status_code == 404
    assert router(fleet).registry.get(a) is None


async def test_the_api_process_counts_its_own_collections(fleet: Orchestrator) -> None:
    """With workers no session manager runs in the API's process; its collector still counts
    the API's own collections (the series without a worker label)."""
    def gen0_count(text: str) -> float:
        return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == "orchestrator_gc_pause_seconds_count"
                    and s.labels == {"generation": "0"})

    before = gen0_count((await fleet.http.get("/metrics")).text)
    gc.collect(0)
    assert gen0_count((await fleet.http.get("/metrics")).text) >= before + 1


def parse_metrics(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(sample name, session) -> its labels and value, from Prometheus' text format."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "session" in sample.labels:
                out[(sample.name, sample.labels["session"])] = {**sample.labels,
                                                                "value": sample.value}
    return out


def gaps_after(arrivals: list[float], since: float) -> list[tuple[float, float]]:
    """(gap, arrival after it) between consecutive arrivals later than ``since``."""
    times = [t for t in arrivals if t >= since]
    return [(b - a, b) for a, b in itertools.pairwise(times)]


async def test_a_killed_worker_brings_its_sessions_back_and_the_latch_holds(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    a, b, c = new_id("ka"), new_id("kb"), new_id("kc")
    created = {sid: await fleet.create_session(**body(sid, arena)) for sid in (a, b, c)}
    # Ties go to the lower index: a and c on worker 0, b on worker 1.
    assert (owner(fleet, a), owner(fleet, b), owner(fleet, c)) == (0, 1, 0)
    async with robot_for(created[a], arena.base_url) as robot_a, \
            robot_for(created[b], arena.base_url) as robot_b, \
            robot_for(created[c], arena.base_url) as robot_c:
        for sid in (a, b, c):
            assert (await fleet.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: min(len(r.received) for r in (robot_a, robot_b, robot_c)) >= 20,
                       30, "commands to the three robots")
        # c is latched by an emergency stop from its room: recorded in the registry.
        await send_emergency_stop(arena.base_url, "robotics", created[c]["workspace_id"],
                                  created[c]["joint_input_room_id"], "test latch")
        await wait_for(lambda: bool((r := router(fleet).registry.get(c)) and r.latched), 10,
                       "the latch in the registry")
        before_b = (await fleet.status(b))["stats"]

        handle = ray.get_actor(worker_name(0), namespace=fleet.app.state.settings.ray_namespace)
        old_pid = await handle.pid.remote()
        killed_at = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)

        # a publishes again by itself: no call to the API needed.
        sent = len(robot_a.received)
        await wait_for(lambda: any(t.arrived_at > killed_at + 0.2 for t in
                                   list(robot_a.received)[sent:]), 30, "a's commands again")
        resumed = min(t.arrived_at for t in list(robot_a.received)[sent:]
                      if t.arrived_at > killed_at + 0.2)
        back_s = resumed - killed_at
        await asyncio.sleep(1.0)  # b's commands around and after the kill
        gap_b = max(g for g, _ in gaps_after([r.arrived_at for r in robot_b.received],
                                             killed_at - 1.0))
        # The gap is seen by robot_b in this process, which is also the Ray driver that the
        # kill keeps busy; b's own loop (in the other worker) counts what it missed.
        print(f"\nworker SIGKILL: session back in {back_s:.2f} s; other worker's longest "
              f"gap between commands at its robot {gap_b * 1000:.0f} ms")
        assert back_s < 15.0, back_s  # the figure is 5 s; this machine is shared
        assert gap_b < 1.0, gap_b  # the other worker's session went on (normal: 33 ms)

        status_a = await fleet.status(a)
        assert status_a["status"] == "running"
        assert status_a["stats"]["worker"]["pid"] not in (old_pid, os.getpid())
        after_b = (await fleet.status(b))["stats"]
        assert after_b["worker"]["pid"] != old_pid
        assert after_b["ticks"] > before_b["ticks"]
        print("other worker's session across the kill: " + ", ".join(
            f"{k} +{after_b[k] - before_b[k]}"
            for k in ("ticks", "missed_ticks", "plan_underruns", "commands_sent")))

        # c came back latched: stopped, saying why, and silent until an explicit start.
        status_c = await fleet.status(c)
        assert status_c["status"] == "stopped", status_c
        assert status_c["error_message"] == "emergency_stop: test latch"
        count_c = len(robot_c.received)
        await asyncio.sleep(1.0)
        assert len(robot_c.received) == count_c
        robot_c.reset_emergency_stop()
        response = await fleet.http.post(f"/sessions/{c}/start")
        assert response.status_code == 200 and response.json()["status"] == "running"
        await wait_for(lambda: len(robot_c.received) >= count_c + 10, 30, "c after start")
        record = router(fleet).registry.get(c)
        assert record is not None and not record.latched and record.desired == "running"
    for sid in (a, b, c):
        assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200


@dataclass(frozen=True)
class ApiProcess:
    url: str
    proc: subprocess.Popen[bytes]


@contextlib.contextmanager
def api_process(env: dict[str, str], timeout_s: float = 120.0) -> Iterator[ApiProcess]:
    """``python -m orchestrator`` in its own process (its own Ray driver), serving."""
    port = free_port()
    full = {**os.environ, **env, "ORCHESTRATOR_PORT": str(port), "ORCHESTRATOR_HOST": "127.0.0.1",
            "ORCHESTRATOR_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator"], env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the second API process did not start"
            time.sleep(0.25)
        yield ApiProcess(base, proc)
    finally:
        stop_process(proc, 30)


async def test_a_second_api_process_lists_and_drives_the_same_sessions(
    fleet: Orchestrator, arena: ArenaServerProcess, e2e_triton: LocalTriton
) -> None:
    a = new_id("sa")
    created = await fleet.create_session(**body(a, arena))
    env = {"ORCHESTRATOR_WORKERS": "2", "ORCHESTRATOR_RAY_ADDRESS": ray.get_runtime_context()
           .gcs_address, "ORCHESTRATOR_TRITON_URL": e2e_triton.grpc_url}
    with api_process(env) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as other, \
                robot_for(created, arena.base_url) as robot:
            listed = {s["session_id"] for s in (await other.get("/sessions")).json()}
            assert a in listed
            health = (await other.get("/health")).json()
            assert all(w["alive"] for w in health["workers"].values()), health
            # Driven from the other process: it starts, the robot moves, it stops.
            response = await other.post(f"/sessions/{a}/start")
            assert response.status_code == 200 and response.json()["status"] == "running"
            await wait_for(lambda: len(robot.received) >= 20, 30, "commands")
            assert (await fleet.status(a))["status"] == "running"
            response = await other.post(f"/sessions/{a}/stop")
            assert response.json()["status"] == "stopped"
            assert (await fleet.status(a))["status"] == "stopped"
            # A session created there is served here.
            b = new_id("sb")
            response = await other.post("/sessions", json=body(b, arena))
            assert response.status_code == 200, response.text
            await wait_for(lambda: any(s.session_id == b for s in router(fleet).sessions()), 10,
                           "the other process's session listed here")
            assert (await fleet.status(b))["status"] == "ready"
            assert (await other.delete(f"/sessions/{b}")).status_code == 200
            assert (await fleet.http.get(f"/sessions/{b}")).status_code == 404
    # The other API leaving takes nothing with it.
    assert (await fleet.status(a))["status"] == "stopped"
    assert (await fleet.http.delete(f"/sessions/{a}")).status_code == 200


async def test_503_when_every_worker_is_full_and_nothing_is_left_behind(
    fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    ids = [new_id("full") for _ in range(6)]  # 2 workers x 3 sessions
    for sid in ids:
        await fleet.create_session(**body(sid, arena))
    extra = new_id("extra")
    response = await fleet.http.post("/sessions", json=body(extra, arena))
    assert response.status_code == 503, response.text
    assert "every live worker is full" in response.json()["detail"]
    assert router(fleet).registry.get(extra) is None
    assert (await fleet.http.get(f"/sessions/{extra}")).status_code == 404
    for sid in ids:
        assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_503_when_no_worker_is_alive(fleet: Orchestrator, arena: ArenaServerProcess
                                          ) -> None:
    """Last in this module: the workers are killed for good."""
    namespace = fleet.app.state.settings.ray_namespace
    for index in (0, 1):
        ray.kill(ray.get_actor(worker_name(index), namespace=namespace), no_restart=True)
    sid = new_id("nobody")
    async def refused() -> bool:
        response = await fleet.http.post("/sessions", json=body(sid, arena))
        return response.status_code == 503 and "no live worker" in response.json()["detail"]
    await wait_for(refused, 20, "503: no live worker")
    assert router(fleet).registry.get(sid) is None
    health = (await fleet.http.get("/health")).json()
    assert health["workers"] and not any(w["alive"] for w in health["workers"].values())


def test_503_with_the_reason_when_ray_is_unreachable() -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = {"ORCHESTRATOR_WORKERS": "2", "ORCHESTRATOR_RAY_ADDRESS": dead,
           "ORCHESTRATOR_RAY_CONNECT_TIMEOUT_S": "2", "ORCHESTRATOR_TRITON_URL": dead}
    with api_process(env, timeout_s=60) as api:
        url = api.url
        response = httpx.post(f"{url}/sessions", timeout=30, json={
            "session_id": "unreachable", "policy_path": "tiny_act"})
        assert response.status_code == 503, response.text
        assert "Ray at" in response.json()["detail"]
        assert "unreachable" in response.json()["detail"]
        health = httpx.get(f"{url}/health", timeout=30).json()
        assert "unreachable" in health["workers"]["ray"]


def test_ray_failing_to_start_is_tried_again(private_ray_dir: str, e2e_triton: LocalTriton,
                                             arena: ArenaServerProcess) -> None:
    """A local Ray that fails to start (here its folder cannot be made: a file is in the
    way, a real fault) is 503s with the reason, then tried again: once the fault is gone,
    the API joins by itself and serves sessions, no restart needed."""
    blocked = Path(tempfile.mkdtemp(prefix="t", dir=private_ray_dir)) / "ray"
    blocked.write_text("not a folder")
    env = {"ORCHESTRATOR_WORKERS": "2", "ORCHESTRATOR_RAY_CONNECT_TIMEOUT_S": "20",
           "ORCHESTRATOR_TRITON_URL": e2e_triton.grpc_url, "RAY_TMPDIR": str(blocked),
           "ORCHESTRATOR_RAY_NAMESPACE": new_id("late")}
    with api_process(env, timeout_s=60) as api:
        url = api.url
        health = httpx.get(f"{url}/health", timeout=30).json()
        assert "NotADirectoryError" in health["workers"]["ray"], health
        response = httpx.post(f"{url}/sessions", timeout=30, json=body(new_id("early"), arena))
        assert response.status_code == 503 and "trying again" in response.json()["detail"]
        blocked.unlink()

        def joined() -> bool:
            workers = httpx.get(f"{url}/health", timeout=30).json()["workers"]
            return len(workers) == 2 and all(w.get("alive") for w in workers.values())

        deadline = time.monotonic() + 90  # the next try (10 s apart at most), Ray, workers
        while not joined():
            assert time.monotonic() < deadline, httpx.get(f"{url}/health", timeout=30).text
            time.sleep(0.5)
        sid = new_id("late")
        response = httpx.post(f"{url}/sessions", timeout=60, json=body(sid, arena))
        assert response.status_code == 200, response.text
        assert httpx.delete(f"{url}/sessions/{sid}", timeout=60).status_code == 200


async def test_the_registry_reads_every_record_at_once_as_one_by_one(
    fleet: Orchestrator,
) -> None:
    """The batch read (one GCS call for all records) against the read it replaced, on the
    fleet's Ray, in a namespace of its own; and the bench of the two runs there."""
    registry = Registry(new_id("registry"))
    assert registry.all() == []
    result = measure(registry, 5, rounds=2)  # writes 5 records, checks both reads' counts
    assert result["sessions"] == 5 and result["batch"]["p50_ms"] > 0
    records = registry.all()
    assert [r.session_id for r in records] == [f"s{i:03d}" for i in range(5)]
    assert records == registry.all_one_by_one()
    registry.delete("s002")
    assert [r.session_id for r in registry.all()] == ["s000", "s001", "s003", "s004"]
