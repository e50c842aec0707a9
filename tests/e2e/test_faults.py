"""Faults, caused for real: the model unloaded, the Arena server killed and restarted on its
port, Triton SIGKILLed and started again on its ports. Sessions stay alive, report what is
wrong, hold (never invent actions) and carry on by themselves; nothing restarts the
orchestrator.

This module owns its Triton and its room server: killing them must not disturb the shared
session fixtures of the other end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from orchestrator.triton.client import TritonClient
from orchestrator.triton.launcher import LocalTriton
from sim_robot.robot import SimRobot
from tests.e2e.conftest import e2e_settings
from tests.support.arena import ArenaServerProcess, arena_server_process
from tests.support.orchestrator import Orchestrator, run_orchestrator, wait_for
from tests.support.policies import write_so100_model
from tests.support.rooms import robot_for
from tests.support.triton import local_triton

MODEL = "so100_tiny"


@pytest.fixture(scope="module")
def fault_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    repo = tmp_path_factory.mktemp("fault_models")
    write_so100_model(repo, MODEL)
    with local_triton(repo, work_dir=tmp_path_factory.mktemp("fault_triton")) as server:
        yield server


@pytest.fixture(scope="module")
def fault_arena() -> Iterator[ArenaServerProcess]:
    with arena_server_process() as server:
        yield server


@contextlib.asynccontextmanager
async def running_sessions(
    orch: Orchestrator, arena: ArenaServerProcess, count: int
) -> AsyncIterator[list[tuple[str, SimRobot]]]:
    """``count`` started sessions, each with its simulated robot, deleted afterwards."""
    out: list[tuple[str, SimRobot]] = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            sid = f"fault-{uuid.uuid4().hex[:6]}"
            created = await orch.create_session(
                session_id=sid, policy_path=MODEL, camera_names=["front"],
                arena_server_url=arena.base_url, max_step=1e6,
            )
            robot = await stack.enter_async_context(robot_for(created, arena.base_url))
            assert (await orch.http.post(f"/sessions/{sid}/start")).status_code == 200
            out.append((sid, robot))
        for _, robot in out:
            await wait_for(lambda r=robot: len(r.received) >= 10, 30, "commands")  # type: ignore[misc]
        try:
            yield out
        finally:
            for sid, _ in out:
                await orch.http.delete(f"/sessions/{sid}")


async def all_status(orch: Orchestrator, sids: list[str]) -> list[dict[str, Any]]:
    return [await orch.status(sid) for sid in sids]


async def assert_holding(orch: Orchestrator, sids: list[str], robots: list[SimRobot]) -> None:
    """The plan runs out (an underrun is reported) and then no command arrives any more:
    nothing is invented."""

    async def ran_out() -> bool:
        return all(s["stats"]["reason"] == "underrun" and s["stats"]["actions_in_queue"] == 0
                   for s in await all_status(orch, sids))

    await wait_for(ran_out, 30, "the plan to run out")
    await asyncio.sleep(0.1)  # a send already on the wire may still land
    counts = [len(r.received) for r in robots]
    await asyncio.sleep(0.6)  # longer than a whole chunk (10 ticks at 30 Hz)
    assert [len(r.received) for r in robots] == counts


async def resumed(robots: list[SimRobot], more: int = 10) -> None:
    counts = [len(r.received) for r in robots]
    for robot, count in zip(robots, counts, strict=True):
        await wait_for(lambda r=robot, c=count: len(r.received) >= c + more,  # type: ignore[misc]
                       60, "commands to resume")


async def test_model_unloaded_sessions_report_it_and_recover_when_loaded(
    fault_triton: LocalTriton, fault_arena: ArenaServerProcess
) -> None:
    async with (run_orchestrator(e2e_settings(fault_triton)) as orch,
                running_sessions(orch, fault_arena, 1) as sessions,
                TritonClient(fault_triton.grpc_url, timeout_s=5.0) as operator):
        (sid, robot), = sessions
        await operator.unload_model(MODEL)

        async def reported() -> bool:
            status = await orch.status(sid)
            return str(status["error_message"]).startswith("model_unavailable")

        await wait_for(reported, 30, "model_unavailable in the status")
        status = await orch.status(sid)
        assert status["status"] == "running" and status["stats"]["health"] == "degraded"
        assert MODEL in status["error_message"]
        await assert_holding(orch, [sid], [robot])

        await operator.load_model(MODEL)
        await resumed([robot])

        async def healthy() -> bool:
            status = await orch.status(sid)
            return status["error_message"] is None and status["stats"]["health"] == "ok"

        await wait_for(healthy, 30, "the session to report healthy")


async def test_arena_restart_sessions_rejoin_and_commands_frames_joints_resume(
    fault_triton: LocalTriton, fault_arena: ArenaServerProcess
) -> None:
    async with (run_orchestrator(e2e_settings(fault_triton)) as orch,
                running_sessions(orch, fault_arena, 2) as sessions):
        sids = [sid for sid, _ in sessions]
        robots = [robot for _, robot in sessions]
        before = await all_status(orch, sids)

        await asyncio.to_thread(fault_arena.kill)  # SIGKILL: sockets drop, rooms are lost
        await asyncio.sleep(0.5)
        await asyncio.to_thread(fault_arena.start)  # same port, empty memory

        await resumed(robots, more=30)

        async def inputs_flow() -> bool:
            now = await all_status(orch, sids)
            return all(
                n["stats"]["images_received"]["front"] > b["stats"]["images_received"]["front"]
                + 10 and n["stats"]["joints_received"] > b["stats"]["joints_received"] + 10
                for n, b in zip(now, before, strict=True)
            )

        await wait_for(inputs_flow, 60, "frames and joints after the restart")
        for status in await all_status(orch, sids):
            assert status["status"] == "running"
            assert all(status["stats"]["connections"].values()), status["stats"]["connections"]


async def test_triton_killed_sessions_hold_degraded_and_resume_after_restart(
    fault_triton: LocalTriton, fault_arena: ArenaServerProcess
) -> None:
    settings = e2e_settings(fault_triton, triton_timeout_s=1.0)
    async with (run_orchestrator(settings) as orch,
                running_sessions(orch, fault_arena, 2) as sessions):
        sids = [sid for sid, _ in sessions]
        robots = [robot for _, robot in sessions]

        await asyncio.to_thread(fault_triton.kill)  # SIGKILL mid-run

        async def degraded() -> bool:
            return all(s["stats"]["health"] == "degraded" and s["error_message"]
                       for s in await all_status(orch, sids))

        await wait_for(degraded, 30, "sessions to report degraded")
        health = (await orch.http.get("/health")).json()
        assert health["status"] == "degraded" and health["triton_ready"] is False
        for status in await all_status(orch, sids):
            assert status["status"] == "running"  # alive, not in error
            assert status["error_message"].split(":")[0] in (
                "triton_unavailable", "inference_timeout")
        # No action past its tick: once the plan runs out, nothing more is published.
        await assert_holding(orch, sids, robots)
        held = [s["stats"]["commands_sent"] for s in await all_status(orch, sids)]
        await asyncio.sleep(0.3)
        assert [s["stats"]["commands_sent"] for s in await all_status(orch, sids)] == held

        await asyncio.to_thread(fault_triton.start)  # same ports
        await resumed(robots)

        async def recovered() -> bool:
            return all(s["stats"]["health"] == "ok" and s["error_message"] is None
                       for s in await all_status(orch, sids))

        await wait_for(recovered, 30, "sessions to report ok")
        assert (await orch.http.get("/health")).json()["status"] == "healthy"
