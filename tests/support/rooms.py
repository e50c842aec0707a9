"""Test participants in a session's rooms: a simulated robot wired to a session, a raw
WebSocket participant (to send what no well-behaved client sends), and full-command
reconstruction from what the robot received."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect

from sim_robot.robot import ReceivedCommand, SimRobot
from tests.support.policies import SO100


@contextlib.asynccontextmanager
async def robot_for(
    created: Mapping[str, Any], base_url: str, *, joints: bool = True, fps: float = 15.0,
    width: int = 160, height: int = 120,
) -> AsyncIterator[SimRobot]:
    """A SimRobot in the rooms of a created session (joints at 30 Hz, one camera)."""
    robot = SimRobot(
        base_url, created["workspace_id"],
        joint_input=created["joint_input_room_id"] if joints else None,
        joint_output=created["joint_output_room_id"],
        cameras=created["camera_room_ids"], joints=SO100, rate=30, fps=fps,
        width=width, height=height, max_velocity=1e6, limits=(-1e4, 1e4),
        initial={j: float(i * 7 - 10) for i, j in enumerate(SO100)},
    )
    await robot.start()
    try:
        yield robot
    finally:
        await robot.stop()


def ws_url(base_url: str, kind: Literal["robotics", "video"], workspace: str, room: str) -> str:
    scheme, rest = base_url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/{kind}/workspaces/{workspace}" \
        f"/rooms/{room}/ws"


@contextlib.asynccontextmanager
async def raw_participant(
    base_url: str, kind: Literal["robotics", "video"], workspace: str, room: str,
    role: Literal["producer", "consumer"] = "consumer",
) -> AsyncIterator[ClientConnection]:
    """A joined WebSocket with no client logic on top: send anything through it."""
    url = ws_url(base_url, kind, workspace, room)
    async with connect(url, open_timeout=5, close_timeout=1, max_size=None) as ws:
        await ws.send(json.dumps({"participant_id": f"test-{uuid.uuid4().hex[:8]}",
                                  "role": role}))
        async with asyncio.timeout(5):
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("type") == "error":
                    raise AssertionError(f"join of {url} refused: {msg}")
                if msg.get("type") == "joined":
                    break
        yield ws


async def send_emergency_stop(
    base_url: str, kind: Literal["robotics", "video"], workspace: str, room: str,
    reason: str,
) -> None:
    async with raw_participant(base_url, kind, workspace, room) as ws:
        await ws.send(json.dumps({"type": "emergency_stop", "reason": reason}))
        # The server broadcasts it to everyone, the sender included: once we have it back,
        # everyone else has been sent it too.
        async with asyncio.timeout(5):
            while json.loads(await ws.recv()).get("type") != "emergency_stop":
                pass


def full_commands(received: Iterable[ReceivedCommand]) -> list[dict[str, float]]:
    """The robot gets only changed joints (the server forwards changes): rebuild every
    command as the complete set of joint values in force after it."""
    state: dict[str, float] = {}
    out = []
    for command in received:
        state.update(command.values)
        out.append(dict(state))
    return out
