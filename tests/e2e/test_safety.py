"""Safety on the real session path: limits (model metadata and request), max step, NaN from
the model, emergency stop from every room and from the API, and the stale-observation
watchdog. Real Triton, room server, WebRTC simulated robot, API on uvicorn."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.arena.robotics import RoboticsProducer
from orchestrator.sessions.errors import InvalidTransition
from orchestrator.triton.launcher import LocalTriton
from sim_robot.robot import SimRobot
from tests.e2e.conftest import e2e_settings
from tests.support.arena import ArenaServerProcess
from tests.support.orchestrator import Orchestrator, run_orchestrator, wait_for
from tests.support.policies import SO100, write_so100_model
from tests.support.rooms import full_commands, robot_for, send_emergency_stop
from tests.support.triton import local_triton

# Robot units; the tiny exported ACT emits values well inside them.
WIDE = {f"{j}.pos": (-1e4, 1e4) for j in SO100}


@pytest.fixture(scope="module")
def safety_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    repo = tmp_path_factory.mktemp("safety_models")
    # Far out of range on one joint, whose limit the model's metadata narrows.
    write_so100_model(repo, "so100_limits", bias={"shoulder_pan.pos": 500.0},
                      joint_limits={"shoulder_pan.pos": (-5.0, 5.0)})
    write_so100_model(repo, "so100_nan", bias={"elbow_flex.pos": float("nan")})
    with local_triton(repo, work_dir=tmp_path_factory.mktemp("safety_triton")) as server:
        yield server


def body(sid: str, arena: ArenaServerProcess, policy: str = "tiny_act", **extra: Any
         ) -> dict[str, Any]:
    return {"session_id": sid, "policy_path": policy, "camera_names": ["front"],
            "arena_server_url": arena.base_url, **extra}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def test_limits_from_metadata_and_request_and_max_step_are_enforced_counted_logged(
    safety_triton: LocalTriton, arena: ArenaServerProcess
) -> None:
    async with run_orchestrator(e2e_settings(safety_triton)) as orch:
        sid = new_id("limits")
        created = await orch.create_session(
            **body(sid, arena, "so100_limits", joint_limits={"elbow_flex.pos": [0.0, 1.0]})
        )
        async with robot_for(created, arena.base_url) as robot:
            assert (await orch.http.post(f"/sessions/{sid}/start")).status_code == 200
            await wait_for(lambda: len(robot.received) >= 40, 30, "40 commands")
            commands = full_commands(list(robot.received))
            for command in commands:
                assert -5.0 <= command["shoulder_pan"] <= 5.0  # model metadata
                assert 0.0 <= command["elbow_flex"] <= 1.0  # the session's request
                assert all(-100.0 <= command[j] <= 100.0 for j in SO100)  # defaults
                assert 0.0 <= command["gripper"] <= 100.0
            # Max step is on by default (10 per tick): the arm walks to the limit.
            for before, after in itertools.pairwise(commands):
                assert all(abs(after[j] - before[j]) <= 10.0 + 1e-9 for j in SO100)
            assert commands[-1]["shoulder_pan"] == 5.0  # the model asks ~+500: clamped

            status = await orch.status(sid)
            safety = status["stats"]["safety"]
            assert safety["clamped_limit"]["shoulder_pan.pos"] >= 40
            assert status["stats"]["safety"]["by_kind"]["limit"] >= 40
            # Logged with the joint and the value, rate-limited: far fewer lines than events.
            logs = (await orch.http.get("/debug/logs", params={"level": "WARNING",
                                                                "limit": 2000})).json()["logs"]
            lines = [r["message"] for r in logs
                     if sid in r["message"] and "limit on joint shoulder_pan.pos" in r["message"]]
            assert lines, "no intervention logged"
            assert len(lines) <= 3 < safety["clamped_limit"]["shoulder_pan.pos"]
            assert "published 5.0" in lines[0]
        assert (await orch.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_nan_from_the_model_is_never_published_and_the_session_says_why(
    safety_triton: LocalTriton, arena: ArenaServerProcess
) -> None:
    async with run_orchestrator(e2e_settings(safety_triton)) as orch:
        sid = new_id("nan")
        created = await orch.create_session(**body(sid, arena, "so100_nan"))
        async with robot_for(created, arena.base_url) as robot:
            assert (await orch.http.post(f"/sessions/{sid}/start")).status_code == 200

            async def rejected_twice() -> bool:
                return (await orch.status(sid))["stats"]["rejected_chunks"] >= 2

            await wait_for(rejected_twice, 30, "two rejected chunks")
            status = await orch.status(sid)
            assert status["status"] == "running"  # alive, holding
            assert status["stats"]["health"] == "degraded"
            assert "non-finite" in status["error_message"]
            assert status["error_message"].startswith("bad_chunk")
            assert status["stats"]["errors_by_kind"]["bad_chunk"] >= 2
            assert status["stats"]["commands_sent"] == 0
            assert len(robot.received) == 0
        assert (await orch.http.delete(f"/sessions/{sid}")).status_code == 200


@pytest.mark.parametrize("room", ["joint_input", "joint_output", "camera", "api"])
async def test_emergency_stop_latches_from_every_room_and_the_api_until_start(
    orchestrator: Orchestrator, arena: ArenaServerProcess, room: str
) -> None:
    sid = new_id(f"estop-{room.replace('_', '')}")
    created = await orchestrator.create_session(**body(sid, arena, joint_limits=WIDE,
                                                       max_step=1e6))
    ws = created["workspace_id"]
    async with robot_for(created, arena.base_url) as robot:
        assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(robot.received) >= 10, 30, "commands before the stop")

        if room == "api":
            response = await orchestrator.http.post(f"/sessions/{sid}/stop")
            assert response.status_code == 200 and response.json()["status"] == "stopped"
        else:
            kind, room_id = {
                "joint_input": ("robotics", created["joint_input_room_id"]),
                "joint_output": ("robotics", created["joint_output_room_id"]),
                "camera": ("video", created["camera_room_ids"]["front"]),
            }[room]
            # Sent by a third participant: the robot, the operator's UI, anyone in the room.
            await send_emergency_stop(arena.base_url, kind, ws, room_id, f"test {room}")
            await wait_for(
                lambda: orchestrator.manager.get(sid).loop.core.safety.latched, 10, "the latch"
            )
            status = await orchestrator.status(sid)
            assert status["status"] == "stopped"
            assert status["error_message"] == f"emergency_stop: test {room}"

        # Latched: nothing more is published, whatever arrives from the model.
        await asyncio.sleep(0.3)  # a send already on the wire may still land
        count = len(robot.received)
        await asyncio.sleep(0.7)
        assert len(robot.received) == count
        assert (await orchestrator.status(sid))["status"] == "stopped"

        # Only an explicit start re-arms.
        robot.reset_emergency_stop()
        response = await orchestrator.http.post(f"/sessions/{sid}/start")
        assert response.status_code == 200 and response.json()["status"] == "running"
        await wait_for(lambda: len(robot.received) >= count + 10, 30, "commands after start")
        assert (await orchestrator.status(sid))["error_message"] is None
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200


async def explain_quiet(orchestrator: Orchestrator, sid: str, robot: SimRobot) -> str:
    """Why a robot gets no commands: the session's status and queue, what the robot saw."""
    queue = (await orchestrator.http.get(f"/debug/sessions/{sid}/queue")).json()
    return (f"status {await orchestrator.status(sid)}; queue {queue}; robot received "
            f"{len(robot.received)}, estopped {robot.estopped}")


@pytest.mark.parametrize("call", ["start", "restart"])
async def test_an_emergency_stop_that_lands_while_a_start_is_under_way_wins(
    orchestrator: Orchestrator, arena: ArenaServerProcess, call: str
) -> None:
    """The operator clicks restart (or start), and the robot's emergency stop arrives while
    that is still under way: the later stop stays latched and the call is refused."""
    sid = new_id(f"estop-{call}")
    created = await orchestrator.create_session(**body(sid, arena, joint_limits=WIDE,
                                                       max_step=1e6))
    async with robot_for(created, arena.base_url) as robot:
        assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(robot.received) >= 10, 30, "commands before")
        session = orchestrator.manager.get(sid)
        assert session.loop is not None
        if call == "start":  # asked for while another transition holds the session
            assert (await orchestrator.http.post(f"/sessions/{sid}/stop")).status_code == 200
            async with session._transition:
                under_way = asyncio.create_task(session.start())
                await asyncio.sleep(0)
                # What the room client calls on an emergency_stop message (the timing is
                # the point: a message over the room cannot be placed inside this window).
                session.joints_in.on_emergency_stop("robot bumped")  # type: ignore[misc]
        else:
            under_way = asyncio.create_task(session.restart())
            await asyncio.sleep(0)  # it is now waiting inside the loop's stop
            assert not under_way.done()
            session.joints_in.on_emergency_stop("robot bumped")  # type: ignore[misc]
        with pytest.raises(InvalidTransition, match="robot bumped"):
            await under_way
        assert session.loop.core.safety.latched
        status = await orchestrator.status(sid)
        assert status["status"] == "stopped"
        await asyncio.sleep(0.3)  # a send already on the wire may still land
        count = len(robot.received)
        await asyncio.sleep(0.7)
        assert len(robot.received) == count
        # The next explicit start re-arms.
        robot.reset_emergency_stop()
        assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(robot.received) >= count + 10, 30, "commands after",
                       explain=lambda: explain_quiet(orchestrator, sid, robot))
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_stale_watchdog_holds_when_the_robot_goes_quiet_and_resumes_by_itself(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    sid = new_id("stale")
    created = await orchestrator.create_session(**body(sid, arena, joint_limits=WIDE,
                                                       max_step=1e6))
    ws, joint_room = created["workspace_id"], created["joint_input_room_id"]
    session = orchestrator.manager.get(sid)

    async def reason() -> str:
        return str((await orchestrator.status(sid))["stats"]["reason"])

    async def held_stale() -> bool:
        return await reason() == "stale_observation"

    async def settled() -> int:
        """Commands so far, once nothing is left to publish: a chunk asked for while the
        inputs were fresh may still land and be played out, and a send already on the
        wire may still arrive."""
        assert session.loop is not None
        core = session.loop.core
        await wait_for(lambda: not core.in_flight and len(core.plan) == 0, 10,
                       "nothing in flight or planned")
        await asyncio.sleep(0.3)
        return len(robot.received)

    async def publish_joints(producer: RoboticsProducer) -> None:
        k = 0
        while True:  # a robot that moves a little: every update carries a change
            k += 1
            await producer.send_joints({j: float(i + (k % 2) * 0.01) for i, j in enumerate(SO100)})
            await asyncio.sleep(1 / 30)

    # The camera comes from the simulated robot; the joints from a producer we control.
    async with robot_for(created, arena.base_url, joints=False) as robot:
        producer = RoboticsProducer(arena.base_url, ws, joint_room, f"{sid}-test-joints")
        await producer.start()
        feeder = asyncio.create_task(publish_joints(producer))
        try:
            assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
            await wait_for(lambda: len(robot.received) >= 10, 30, "commands")

            # 1. The camera freezes: frames stop, the plan runs out, the session holds.
            robot.cameras["front"].paused = True
            await wait_for(held_stale, 15, "stale_observation after the camera froze")
            count = await settled()
            requests = (await orchestrator.status(sid))["stats"]["inference_requests"]
            await asyncio.sleep(0.5)
            assert len(robot.received) == count  # holding: nothing new is published
            status = await orchestrator.status(sid)
            assert status["stats"]["inference_requests"] == requests  # no refill from it
            assert status["status"] == "running"
            robot.cameras["front"].paused = False
            await wait_for(lambda: len(robot.received) >= count + 10, 30, "resumed (camera)")

            # 2. The robot stops publishing joints (its producer leaves the room).
            feeder.cancel()
            await producer.stop()
            await wait_for(held_stale, 15, "stale_observation after the joints stopped")
            assert session.state.value == "running"
            count = await settled()
            await asyncio.sleep(0.5)
            assert len(robot.received) == count
            await producer.start()
            feeder = asyncio.create_task(publish_joints(producer))
            await wait_for(lambda: len(robot.received) >= count + 10, 30, "resumed (joints)")
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            await producer.stop()
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200

