"""Sessions end to end: HTTP API -> rooms -> simulated robot -> Triton -> commands.

Real parts only: the tiny ACT exported by the exporter and served by a local Triton, the
room server in its own process, WebRTC video from the simulated robot, the API on uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from orchestrator.arena.rest import ArenaError, ArenaRest
from orchestrator.arena.robotics import RoboticsProducer
from orchestrator.sessions.errors import InvalidTransition
from orchestrator.sessions.loop import ControlLoop
from sim_robot.robot import SimRobot
from tests.support.arena import ArenaServerProcess
from tests.support.exports import ExportedRepository
from tests.support.orchestrator import Orchestrator, wait_for

ROBOT_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll",
                "gripper")
WIDE = {f"{j}.pos": (-1e4, 1e4) for j in ROBOT_JOINTS}  # no clamping: compare raw outputs


def session_body(session_id: str, arena: ArenaServerProcess, **extra: Any) -> dict[str, Any]:
    return {"session_id": session_id, "policy_path": "tiny_act", "camera_names": ["front"],
            "arena_server_url": arena.base_url, **extra}


@contextlib.asynccontextmanager
async def robot_for(created: dict[str, Any], arena: ArenaServerProcess, *,
                    joints: bool = True, fps: float = 15.0) -> AsyncIterator[SimRobot]:
    robot = SimRobot(
        arena.base_url, created["workspace_id"],
        joint_input=created["joint_input_room_id"] if joints else None,
        joint_output=created["joint_output_room_id"],
        cameras=created["camera_room_ids"], joints=ROBOT_JOINTS, rate=30, fps=fps,
        width=160, height=120, max_velocity=1e6, limits=(-1e4, 1e4),
        initial={j: float(i * 7 - 10) for i, j in enumerate(ROBOT_JOINTS)},
    )
    await robot.start()
    try:
        yield robot
    finally:
        await robot.stop()


@contextlib.asynccontextmanager
async def driven_loop(orchestrator: Orchestrator, arena: ArenaServerProcess, prefix: str
                      ) -> AsyncIterator[ControlLoop]:
    """A started session commanding a robot (10 commands seen): its control loop, for a
    test to inject a fault into. The session is deleted afterwards."""
    sid = f"{prefix}-{uuid.uuid4().hex[:6]}"
    created = await orchestrator.create_session(**session_body(sid, arena))
    async with robot_for(created, arena) as robot:
        assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(robot.received) >= 10, 30, "commands")
        loop = orchestrator.manager.get(sid).loop
        assert loop is not None
        yield loop
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_a_start_while_running_answers_200_and_keeps_the_plan(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    """The front-end may start a running session again (the server it replaces answered
    200): the plan must not be dropped, as a re-arm would."""
    async with driven_loop(orchestrator, arena, "restart-idem") as loop:
        rearms: list[object] = []
        rearm = loop.core.rearm
        loop.core.rearm = lambda *a: (rearms.append(a), rearm(*a))[1]  # type: ignore[method-assign]
        sid = loop.session_id
        again = await orchestrator.http.post(f"/sessions/{sid}/start")
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "running" and rearms == []
        assert orchestrator.manager.get(sid).loop is loop and loop.running


def model_output(onnx_path: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["action"], inputs)[0])


async def test_session_drives_robot_with_the_models_actions(
    orchestrator: Orchestrator, arena: ArenaServerProcess, e2e_model: ExportedRepository
) -> None:
    sid = f"e2e-{uuid.uuid4().hex[:6]}"
    created = await orchestrator.create_session(
        **session_body(sid, arena, blend="replace", joint_limits=WIDE, max_step=1e6)
    )
    assert created["camera_room_ids"] == {"front": f"{sid}-front"}
    assert created["joint_input_room_id"] == f"{sid}-joint-input"
    status = await orchestrator.status(sid)
    assert status["status"] == "ready"
    assert status["inference_stats"]["model"] == "tiny_act"
    assert status["inference_stats"]["chunk_size"] == e2e_model.result.contract.chunk_size

    async with robot_for(created, arena) as robot:
        response = await orchestrator.http.post(f"/sessions/{sid}/start")
        assert response.status_code == 200, response.text
        await wait_for(lambda: len(robot.received) >= 45, 30, "45 commands at the robot")

        # Commands come at the session's rate (the model's fps: 30 Hz), one per tick.
        arrivals = np.array([c.arrived_at for c in list(robot.received)[-40:]])
        median_period = float(np.median(np.diff(arrivals)))
        assert 0.5 / 30 < median_period < 2.0 / 30, median_period

        # Every chunk is the model's output for the observation that was sent ...
        loop = orchestrator.manager.get(sid).loop
        chunks = list(loop.recent_chunks)
        assert len(chunks) >= 2
        onnx_path = str(e2e_model.result.onnx_path)
        rows = []
        for observation, chunk in chunks:
            expected = model_output(onnx_path, loop.builder.inputs(observation))[0]
            np.testing.assert_allclose(chunk, expected, atol=1e-4, rtol=1e-4)
            rows.append(chunk)
        # ... and with `replace`, every command the robot got is a row of one of them.
        table = np.concatenate(rows)
        index = {f"{j}": i for i, j in enumerate(ROBOT_JOINTS)}
        first_chunk_tick = chunks[0][0].tick
        matched = 0
        for command in list(robot.received)[-20:]:
            cols = [index[name] for name in command.values]
            values = np.array(list(command.values.values()))
            assert np.isclose(table[:, cols], values, atol=1e-9).all(axis=1).any(), (
                f"command {command.values} is no row of the model's chunks "
                f"(from tick {first_chunk_tick})"
            )
            matched += 1
        assert matched == 20

        stats = (await orchestrator.status(sid))["stats"]
        assert stats["inference_count"] >= 2
        assert stats["commands_sent"] >= 45
        assert stats["images_received"]["front"] > 0
        assert stats["joints_received"] > 0
        assert stats["inference_latency_ms"]["samples"] >= 2

        # Stop: nothing more is published.
        response = await orchestrator.http.post(f"/sessions/{sid}/stop")
        assert response.json()["status"] == "stopped"
        await asyncio.sleep(0.2)
        count = len(robot.received)
        await asyncio.sleep(0.5)
        assert len(robot.received) == count
        # Start again from stopped (the seed could not), then restart from running.
        assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(robot.received) >= count + 10, 20, "commands after start")
        response = await orchestrator.http.post(f"/sessions/{sid}/restart")
        assert response.json()["status"] == "running"
        count = len(robot.received)
        try:
            await wait_for(lambda: len(robot.received) >= count + 10, 20,
                           "commands after restart")
        except AssertionError:
            status = await orchestrator.status(sid)
            raise AssertionError(f"{status} robot={robot.describe()}") from None
        # Reset clears the plan and joint state without dropping connections.
        assert (await orchestrator.http.post(f"/debug/sessions/{sid}/reset")).status_code == 200
        queue = (await orchestrator.http.get(f"/debug/sessions/{sid}/queue")).json()
        assert queue["timing"]["rate_hz"] == 30.0
        count = len(robot.received)
        await wait_for(lambda: len(robot.received) >= count + 10, 20, "commands after reset")

    # Delete: the loop stops and the rooms are gone.
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200
    assert (await orchestrator.http.get(f"/sessions/{sid}")).status_code == 404
    async with ArenaRest(arena.base_url) as rest:
        for room in (created["joint_input_room_id"], created["joint_output_room_id"]):
            with pytest.raises(ArenaError) as err:
                await rest.get_robotics_room(created["workspace_id"], room)
            assert err.value.status == 404
        with pytest.raises(ArenaError):
            await rest.get_video_room(created["workspace_id"], f"{sid}-front")


async def test_partial_updates_and_the_empty_join_state_are_not_readings(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    """The seed's defects: a partial joint_update zeroed the other joints, and the empty
    state_sync on join was taken as an all-zero reading."""
    sid = f"partial-{uuid.uuid4().hex[:6]}"
    created = await orchestrator.create_session(**session_body(sid, arena, blend="replace",
                                                               joint_limits=WIDE))
    ws = created["workspace_id"]
    async with robot_for(created, arena, joints=False):
        assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        loop = orchestrator.manager.get(sid).loop

        async def waiting_for_joints() -> bool:  # frames come first (WebRTC takes a while)
            return (await orchestrator.status(sid))["stats"]["reason"] == "waiting_for_joints"

        await wait_for(waiting_for_joints, 20, "frames flowing, no joint reading yet")
        await asyncio.sleep(0.5)
        status = await orchestrator.status(sid)
        assert status["stats"]["inference_requests"] == 0
        assert status["stats"]["reason"] == "waiting_for_joints"

        producer = RoboticsProducer(arena.base_url, ws, created["joint_input_room_id"],
                                    f"{sid}-test-robot")
        await producer.start()
        try:
            first = {"shoulder_pan": 11.0, "shoulder_lift": -22.0, "elbow_flex": 33.0}
            await producer.send_joints(first)
            await asyncio.sleep(0.5)
            assert (await orchestrator.status(sid))["stats"]["inference_requests"] == 0
            # The rest arrives in a second, partial update: the first three must stay.
            await producer.send_joints({"wrist_flex": 4.0, "wrist_roll": 5.0, "gripper": 60.0})
            await wait_for(lambda: len(loop.recent_chunks) >= 1, 20, "a chunk")
            observation, _ = loop.recent_chunks[0]
            np.testing.assert_allclose(observation.state, [11, -22, 33, 4, 5, 60])
            # A later partial update changes only its own joint.
            await producer.send_joints({"elbow_flex": -7.5})
            await wait_for(lambda: any(o.state[2] == -7.5 for o, _ in loop.recent_chunks),
                           20, "a chunk from the updated state")
            latest = next(o for o, _ in reversed(loop.recent_chunks) if o.state[2] == -7.5)
            np.testing.assert_allclose(latest.state, [11, -22, -7.5, 4, 5, 60])
        finally:
            await producer.stop()
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_a_delete_during_a_restart_leaves_nothing_ticking(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    """DELETE lands while a restart is between its stop and its start: the restart must not
    leave a control loop running that nothing refers to any more."""
    sid = f"delrestart-{uuid.uuid4().hex[:6]}"
    created = await orchestrator.create_session(**session_body(sid, arena))
    async with robot_for(created, arena) as robot:
        assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(robot.received) >= 10, 30, "commands")
        session = orchestrator.manager.get(sid)
        assert session.loop is not None
        under_way = asyncio.create_task(session.restart())
        await asyncio.sleep(0)  # inside the loop's stop
        assert not under_way.done()
        await orchestrator.manager.delete(sid)  # what DELETE /sessions/{id} runs
        with pytest.raises(InvalidTransition, match="deleted"):
            await under_way
        assert not session.loop.running
        await asyncio.sleep(0.3)
        count = len(robot.received)
        await asyncio.sleep(0.7)
        assert len(robot.received) == count
    assert (await orchestrator.http.get(f"/sessions/{sid}")).status_code == 404


async def test_an_unexpected_error_in_a_chunk_request_costs_that_request_only(
    orchestrator: Orchestrator, arena: ArenaServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request fails with an error no adapter names. Injected: an OSError like a full
    /dev/shm when a shared-memory region is made, which cannot be caused here without
    filling the machine's /dev/shm. The session must ask again, not wait for that answer
    for ever while its plan runs out."""
    async with driven_loop(orchestrator, arena, "oserror") as loop:
        real, failed = loop._triton.infer, []

        async def once_failing(*args: Any, **kwargs: Any) -> Any:
            if not failed:
                failed.append(True)
                raise OSError(errno.ENOSPC, "No space left on device")
            return await real(*args, **kwargs)

        monkeypatch.setattr(loop._triton, "infer", once_failing)
        await wait_for(lambda: bool(failed), 30, "the injected failure")
        chunks = loop.core.stats().chunks
        await wait_for(lambda: loop.core.stats().chunks >= chunks + 3, 30, "chunks after it")
        assert loop.counters.errors["inference_error"] == 1


async def test_an_observation_that_cannot_be_taken_costs_that_request_only(
    orchestrator: Orchestrator, arena: ArenaServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taking the observation fails once with an error no adapter names. Injected: an
    OSError from the frame conversion, as PyAV raises for some decoder faults, which a
    well-formed stream does not cause. The request was left outstanding: the session never
    asked for a chunk again, not even after a restart."""
    async with driven_loop(orchestrator, arena, "snaperr") as loop:
        camera = loop._cameras["front"]
        real, failed = camera.latest, []

        def once_failing() -> Any:
            if not failed:
                failed.append(True)
                raise OSError(errno.EIO, "Input/output error")
            return real()

        monkeypatch.setattr(camera, "latest", once_failing)
        await wait_for(lambda: bool(failed), 30, "the injected failure")
        chunks = loop.core.stats().chunks
        await wait_for(lambda: loop.core.stats().chunks >= chunks + 3, 30, "chunks after it")
        assert loop.counters.errors["observation_error"] == 1


async def test_a_session_rejoins_robotics_rooms_re_created_under_their_ids(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    """A robot (or a page) that makes "its" rooms again, under the same ids, replaces them
    (a quirk of the server): our sockets stay open but are no longer counted. Joints from
    the robot never arrived again, yet it showed as present, so the session went on
    commanding from its last reading. It must join again by itself."""
    sid = f"recreated-{uuid.uuid4().hex[:6]}"
    created = await orchestrator.create_session(**session_body(sid, arena))
    session = orchestrator.manager.get(sid)
    async with robot_for(created, arena) as robot:
        assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(robot.received) >= 10, 30, "commands")
    async with ArenaRest(arena.base_url) as rest:
        for room in (created["joint_input_room_id"], created["joint_output_room_id"]):
            await rest.create_robotics_room(created["workspace_id"], room)  # replaced
    readings = session.joints_in.stats.readings
    async with robot_for(created, arena) as robot:
        await wait_for(lambda: len(robot.received) >= 10, 30, "commands to the new robot")
        await wait_for(lambda: session.joints_in.stats.readings > readings, 10,
                       "joints from the new robot")
        # The server still forwards what the unregistered producer sends, so commands can
        # arrive before the presence poll has it join again: wait for both re-joins, then
        # for commands sent after them.
        await wait_for(lambda: session.joints_in.stats.reconnects >= 1
                       and session.commands_out.stats.reconnects >= 1, 10, "both re-joined")
        received = len(robot.received)
        await wait_for(lambda: len(robot.received) >= received + 10, 10,
                       "commands after the re-join")
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200


async def test_a_session_makes_again_the_rooms_deleted_under_it(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    """A room DELETE that reaches the server late (sent for an earlier session of this id,
    by a worker killed since) removes a running session's rooms; the server keeps every
    socket open (a quirk). The session must make its rooms again by itself, keep the frames
    its peer connection still delivers, and drive and see its robot once that joins again."""
    sid = f"deleted-{uuid.uuid4().hex[:6]}"
    created = await orchestrator.create_session(**session_body(sid, arena))
    ws = created["workspace_id"]
    session = orchestrator.manager.get(sid)
    camera = session.cameras["front"]
    robotics = {created["joint_input_room_id"], created["joint_output_room_id"]}
    video = set(created["camera_room_ids"].values())
    async with robot_for(created, arena) as robot, ArenaRest(arena.base_url) as rest:
        assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(robot.received) >= 10 and camera.stats.frames > 10, 30,
                       "commands and frames")
        for room in robotics:
            assert await rest.delete_robotics_room(ws, room)
        for room in video:
            assert await rest.delete_video_room(ws, room)
        rejoins = camera.stats.reconnects

        async def listed() -> bool:
            return (robotics <= {r["id"] for r in await rest.list_robotics_rooms(ws)}
                    and video <= {r["id"] for r in await rest.list_video_rooms(ws)})

        await wait_for(listed, 30, "the rooms made again")
        frames = camera.stats.frames
        await wait_for(lambda: camera.stats.frames > frames + 30, 30, "frames since")
        assert camera.stats.reconnects == rejoins  # the peer connection was kept
    readings = session.joints_in.stats.readings
    frames = camera.stats.frames
    async with robot_for(created, arena) as robot:
        await wait_for(lambda: len(robot.received) >= 10, 30, "commands to the robot")
        await wait_for(lambda: session.joints_in.stats.readings > readings, 30, "its joints")
        await wait_for(lambda: camera.stats.frames > frames + 10, 30, "its frames")
    assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200
