"""A multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head with no
CPUs for sessions, two worker nodes, all on loopback); the node of one session worker is
removed (its processes killed): the worker restarts on the surviving node, and its
session rejoins its rooms and publishes again by itself."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from orchestrator.fleet.worker import worker_name
from orchestrator.triton.launcher import LocalTriton
from tests.e2e.conftest import e2e_settings
from tests.support.arena import ArenaServerProcess
from tests.support.orchestrator import Orchestrator, run_orchestrator, wait_for
from tests.support.rooms import robot_for


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    assert not ray.is_initialized()  # the local fleet of test_fleet.py has left
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False,
        # Node deaths are noticed in ~3 s (the default is ~30 s).
        "_system_config": {"health_check_period_ms": 1000, "health_check_failure_threshold": 3},
    })
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=2)
        yield cluster
    finally:
        cluster.shutdown()


@pytest.fixture
async def fleet(cluster: Cluster, e2e_triton: LocalTriton, arena: ArenaServerProcess
                ) -> AsyncIterator[Orchestrator]:
    if not e2e_triton.is_running():
        e2e_triton.start()
    settings = e2e_settings(e2e_triton, workers=2, ray_address=cluster.address,
                            ray_namespace=f"multinode-{uuid.uuid4().hex[:6]}",
                            log_level="WARNING")
    async with run_orchestrator(settings, start_timeout_s=120) as orch:
        yield orch


def body(sid: str, arena: ArenaServerProcess) -> dict[str, Any]:
    return {"session_id": sid, "policy_path": "tiny_act", "camera_names": ["front"],
            "arena_server_url": arena.base_url, "max_step": 1e6}


async def test_sessions_of_a_lost_node_resume_on_the_survivors(
    cluster: Cluster, fleet: Orchestrator, arena: ArenaServerProcess
) -> None:
    health = (await fleet.http.get("/health")).json()["workers"]
    nodes = {name: w["node_id"] for name, w in health.items()}
    assert len(set(nodes.values())) == 2, health  # spread: one worker per node
    a, b = (f"{p}-{uuid.uuid4().hex[:6]}" for p in ("na", "nb"))
    created = {sid: await fleet.create_session(**body(sid, arena)) for sid in (a, b)}
    record = fleet.app.state.manager.registry.get(a)
    lost_worker = worker_name(record.owner)
    lost = next(n for n in cluster.worker_nodes if n.node_id == nodes[lost_worker])
    assert lost.node_id != ray.get_runtime_context().get_node_id()  # not the driver's
    async with robot_for(created[a], arena.base_url) as robot_a, \
            robot_for(created[b], arena.base_url) as robot_b:
        for sid in (a, b):
            assert (await fleet.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(robot_a.received) >= 20 and len(robot_b.received) >= 20,
                       30, "commands from both nodes")
        removed_at = time.monotonic()
        cluster.remove_node(lost, allow_graceful=False)

        async def moved() -> bool:
            worker = (await fleet.http.get("/health")).json()["workers"][lost_worker]
            return bool(worker["alive"] and worker["node_id"] != lost.node_id)

        await wait_for(moved, 60, "the lost node's worker alive on the other node")
        count_a = len(robot_a.received)
        await wait_for(lambda: len(robot_a.received) >= count_a + 10, 30,
                       "the lost node's session publishing again")
        # The outage is the longest silence after the removal (on one host the removed
        # node's processes take a moment to die).
        times = [c.arrived_at for c in robot_a.received if c.arrived_at >= removed_at]
        gap, resumed = max((b - a, b) for a, b in itertools.pairwise([removed_at, *times]))
        print(f"\nnode removed: its session published again after {resumed - removed_at:.2f} s "
              f"(silent {gap:.2f} s)")
        status = await fleet.status(a)
        assert status["status"] == "running"
        count_b = len(robot_b.received)
        await wait_for(lambda: len(robot_b.received) >= count_b + 10, 30, "b still publishing")
    for sid in (a, b):
        assert (await fleet.http.delete(f"/sessions/{sid}")).status_code == 200
