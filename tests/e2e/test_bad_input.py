"""Bad input into a running session's rooms: malformed, oversized and wrongly typed
messages, unknown joint names, frames of the wrong size. All of it is dropped or mapped
safely and counted; the session keeps driving its robot, and a second session running
beside it sees none of it."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from tests.support.arena import ArenaServerProcess
from tests.support.orchestrator import Orchestrator, wait_for
from tests.support.policies import SO100
from tests.support.rooms import raw_participant, robot_for

WIDE = {f"{j}.pos": (-1e4, 1e4) for j in SO100}
JOINTS = {j: float(10 * i - 20) for i, j in enumerate(SO100)}

ROBOTICS_GARBAGE: list[str | bytes] = [
    "{{{ not json",
    "[]",
    "null",
    json.dumps({"type": 5}),
    json.dumps({"type": "nonsense", "data": [1, 2, 3]}),
    json.dumps({"no_type": True}),
    b"\x00\x01\x02 binary",
    # Wrong types (the room server refuses these; the real one may forward them).
    json.dumps({"type": "joint_update", "data": "not a list"}),
    json.dumps({"type": "joint_update", "data": [{"name": "elbow_flex", "value": "high"}]}),
    json.dumps({"type": "joint_update", "data": [{"name": 7, "value": 1.0}]}),
    json.dumps({"type": "joint_update", "data": [["shoulder_pan", 1.0]]}),
    # Forwarded to the session: an unknown joint, a name too long to be one, extra keys of
    # any type on a known joint, and thousands of junk names in one message.
    json.dumps({"type": "joint_update", "data": [{"name": "laser_cannon", "value": 1.0}]}),
    json.dumps({"type": "joint_update", "data": [{"name": "x" * 300, "value": 1.0}]}),
    json.dumps({"type": "joint_update", "data": [
        {"name": "wrist_roll", "value": JOINTS["wrist_roll"], "speed": "fast",
         "extra": [1, {"a": None}]}]}),
    json.dumps({"type": "joint_update",
                "data": [{"name": f"junk_{i}", "value": float(i)} for i in range(3000)]}),
]

VIDEO_GARBAGE: list[str | bytes] = [
    "not json at all",
    json.dumps({"type": "stream_started", "config": "garbage"}),
    json.dumps({"type": "video_config_update", "config": [1, 2, 3]}),
    json.dumps({"type": "status_update", "status": {"deep": [[[[1]]]]}, "data": "x" * 50_000}),
    json.dumps({"type": "stream_stats", "stats": None}),
    json.dumps({"type": "recovery_triggered", "policy": 12}),
    json.dumps({"type": "webrtc_offer", "offer": "no"}),
    b"\xff" * 1000,
]


def body(sid: str, arena: ArenaServerProcess) -> dict[str, Any]:
    return {"session_id": sid, "policy_path": "tiny_act", "camera_names": ["front"],
            "arena_server_url": arena.base_url, "joint_limits": WIDE, "max_step": 1e6}


async def test_garbage_into_one_session_is_dropped_counted_and_never_reaches_the_other(
    orchestrator: Orchestrator, arena: ArenaServerProcess
) -> None:
    tag = uuid.uuid4().hex[:6]
    bad_id, good_id = f"garbage-{tag}", f"clean-{tag}"
    bad = await orchestrator.create_session(**body(bad_id, arena))
    good = await orchestrator.create_session(**body(good_id, arena))
    ws = bad["workspace_id"]
    # The bad session's camera sends frames of a size the model does not take.
    async with (robot_for(bad, arena.base_url, joints=False, width=90, height=70) as bad_robot,
                robot_for(good, arena.base_url) as good_robot,
                raw_participant(arena.base_url, "robotics", ws, bad["joint_input_room_id"],
                                role="producer") as joints):
        await joints.send(json.dumps({"type": "joint_update", "data": [
            {"name": n, "value": v} for n, v in JOINTS.items()]}))
        for sid in (bad_id, good_id):
            assert (await orchestrator.http.post(f"/sessions/{sid}/start")).status_code == 200
        await wait_for(lambda: len(bad_robot.received) >= 10, 30, "commands (bad session)")
        await wait_for(lambda: len(good_robot.received) >= 10, 30, "commands (good session)")

        # The REST command path of the joint-input room: an unknown joint.
        async with httpx.AsyncClient(base_url=arena.base_url, timeout=5) as rest:
            response = await rest.post(
                f"/robotics/workspaces/{ws}/rooms/{bad['joint_input_room_id']}/command",
                json={"joints": [{"name": "turbo", "value": 5.0}]},
            )
            assert response.status_code == 200, response.text
        for message in ROBOTICS_GARBAGE:
            await joints.send(message)
        async with raw_participant(arena.base_url, "video", ws,
                                   bad["camera_room_ids"]["front"]) as camera_room:
            for message in VIDEO_GARBAGE:
                await camera_room.send(message)
            await camera_room.send(json.dumps({"type": "heartbeat"}))  # the room still answers
            async with asyncio.timeout(5):
                while json.loads(await camera_room.recv()).get("type") != "heartbeat_ack":
                    pass
        # Oversized: the server closes that participant's socket; nothing reaches the session.
        async with raw_participant(arena.base_url, "robotics", ws,
                                   bad["joint_output_room_id"]) as big:
            try:
                await big.send(json.dumps({"type": "joint_update",
                                           "data": [{"name": "a", "value": 1}]}) + " " * 400_000)
                async with asyncio.timeout(5):
                    while True:
                        await big.recv()
            except ConnectionClosed:
                pass

        async def counted() -> bool:
            stats = (await orchestrator.status(bad_id))["stats"]
            names = stats["unknown_joints"]["names"]  # the first 32 are remembered
            return ("laser_cannon" in names and "turbo" in names
                    and stats["dropped_messages"]["joint_input"]["malformed"] >= 1)

        await wait_for(counted, 20, "the garbage to be counted")

        # The bad session carries on: commands flow, frames flow, its state holds exactly
        # what was sent.
        count = len(bad_robot.received)
        frames = (await orchestrator.status(bad_id))["stats"]["images_received"]["front"]
        await wait_for(lambda: len(bad_robot.received) >= count + 20, 30, "commands after")
        status = await orchestrator.status(bad_id)
        assert status["stats"]["images_received"]["front"] > frames
        assert all(status["stats"]["connections"].values()), status["stats"]["connections"]
        assert status["status"] == "running"
        assert status["stats"]["resized_frames"]["front"] > 0
        assert status["stats"]["errors"] == 0, status["stats"]["errors_by_kind"]
        queue = (await orchestrator.http.get(f"/debug/sessions/{bad_id}/queue")).json()
        assert queue["joint_state"] == {f"{n}.pos": v for n, v in JOINTS.items()}

        # The other session saw nothing of it.
        count = len(good_robot.received)
        await wait_for(lambda: len(good_robot.received) >= count + 20, 30, "good commands")
        stats = (await orchestrator.status(good_id))["stats"]
        assert stats["unknown_joints"]["count"] == 0
        assert all(v == {"malformed": 0, "ignored": 0} for v in stats["dropped_messages"]
                   .values()), stats["dropped_messages"]
        assert stats["errors"] == 0
        assert (await orchestrator.http.get("/health")).status_code == 200

    for sid in (bad_id, good_id):
        assert (await orchestrator.http.delete(f"/sessions/{sid}")).status_code == 200
