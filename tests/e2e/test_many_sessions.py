"""Many sessions share one Triton model: the dynamic batcher merges their requests; and the
Prometheus metrics describe every session."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator

import pytest

from orchestrator.triton.client import TritonClient
from orchestrator.triton.launcher import LocalTriton
from sim_robot.robot import SimRobot
from tests.e2e.conftest import e2e_settings
from tests.e2e.test_sessions import ROBOT_JOINTS, session_body
from tests.support.arena import ArenaServerProcess
from tests.support.orchestrator import Orchestrator, run_orchestrator, wait_for


@contextlib.asynccontextmanager
async def fleet(orch: Orchestrator, arena: ArenaServerProcess, n: int,
                **extra: object) -> AsyncIterator[list[SimRobot]]:
    prefix = uuid.uuid4().hex[:6]
    ids = [f"fleet-{prefix}-{i}" for i in range(n)]
    robots: list[SimRobot] = []
    try:
        for sid in ids:
            created = await orch.create_session(**session_body(sid, arena, **extra))
            robot = SimRobot(
                arena.base_url, created["workspace_id"],
                joint_input=created["joint_input_room_id"],
                joint_output=created["joint_output_room_id"],
                cameras=created["camera_room_ids"], joints=ROBOT_JOINTS, rate=30, fps=10,
                width=160, height=120, initial={j: 5.0 for j in ROBOT_JOINTS},
            )
            await robot.start()
            robots.append(robot)
        # Start together: their requests then meet in Triton's queue.
        answers = await asyncio.gather(*(orch.http.post(f"/sessions/{s}/start") for s in ids))
        assert all(a.status_code == 200 for a in answers)
        yield robots
    finally:
        for robot in robots:
            await robot.stop()
        for sid in ids:
            await orch.http.delete(f"/sessions/{sid}")


@pytest.mark.parametrize("n", [2, 8])
async def test_sessions_share_the_model_and_are_batched(
    n: int, e2e_triton: LocalTriton, arena: ArenaServerProcess
) -> None:
    # Replanning every tick keeps a request in flight per session: the load that batching
    # is for. Triton's statistics are cumulative, so compare before and after.
    settings = e2e_settings(e2e_triton, replan_every=1)
    async with (
        run_orchestrator(settings) as orch,
        TritonClient(e2e_triton.grpc_url) as triton,
    ):
        before = await triton.statistics("tiny_act")
        async with fleet(orch, arena, n) as robots:
            await wait_for(lambda: all(len(r.received) >= 30 for r in robots), 60,
                           f"30 commands at each of {n} robots")
            statuses = [await orch.status(s.session_id) for s in orch.manager.sessions()]
            assert len(statuses) == n
        # Triton updates its statistics just after answering: read until they settle.
        after = await triton.statistics("tiny_act")
        while True:
            await asyncio.sleep(0.3)
            again = await triton.statistics("tiny_act")
            if again == after:
                break
            after = again
        batched = {size: count - before.batch_sizes.get(size, 0)
                   for size, count in after.batch_sizes.items()}
        inferences = after.inference_count - before.inference_count
        executions = after.execution_count - before.execution_count
        assert inferences >= n * 2
        assert executions < inferences, (inferences, executions, batched)
        assert any(size > 1 and count > 0 for size, count in batched.items()), batched
        # One shared model: every session reports the same model and the batching figures.
        assert {s["inference_stats"]["model"] for s in statuses} == {"tiny_act"}
        assert all(s["stats"]["triton"]["average_batch_size"] >= 1 for s in statuses)


def _series(text: str, name: str, session: str) -> list[str]:
    return [line for line in text.splitlines()
            if line.startswith(name) and f'session="{session}"' in line]


async def test_metrics_describe_each_session(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    # Narrow limits: the random model's actions get clamped, so interventions are counted.
    narrow = {f"{j}.pos": (-1.0, 1.0) for j in ROBOT_JOINTS}
    async with fleet(orchestrator, arena, 1, joint_limits=narrow) as robots:
        sid = orchestrator.manager.sessions()[0].session_id
        loop = orchestrator.manager.get(sid).loop
        # Clamped commands repeat, and the server forwards only changes: count at the source.
        await wait_for(lambda: loop.stats()["commands_sent"] >= 20, 30, "20 commands")
        assert robots[0].received, "the robot got the (clamped) commands"
        text = (await orchestrator.http.get("/metrics")).text
        for name in ("orchestrator_tick_period_seconds_bucket",
                     "orchestrator_tick_jitter_seconds_bucket",
                     "orchestrator_inference_latency_seconds_bucket",
                     "orchestrator_observation_age_seconds",
                     "orchestrator_plan_length_ticks",
                     "orchestrator_commands_sent_total",
                     "orchestrator_safety_interventions_total",
                     "orchestrator_errors_total"):
            assert _series(text, name, sid), f"{name} has no series for {sid}"
        sent = _series(text, "orchestrator_commands_sent_total", sid)[0]
        assert float(sent.split()[-1]) >= 20
        clamps = [line for line in _series(text, "orchestrator_safety_interventions_total", sid)
                  if 'kind="limit"' in line]
        assert clamps and float(clamps[0].split()[-1]) > 0
        assert re.search(r'^orchestrator_sessions\{state="running"\} 1\.0$', text, re.M)
        assert re.search(r"^orchestrator_triton_up 1\.0$", text, re.M)
    # A deleted session's series are gone.
    text = (await orchestrator.http.get("/metrics")).text
    assert not _series(text, "orchestrator_commands_sent_total", sid)
