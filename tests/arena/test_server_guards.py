"""Server housekeeping and guards: idle-room sweep, oversize frames, CLI entry point."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from arena_server.common import MAX_MESSAGE_BYTES
from orchestrator.arena.rest import ArenaError, ArenaRest, new_workspace
from tests.support.arena import ArenaServerThread, arena_server_thread

from .conftest import join, recv_json, ws_url


async def test_idle_rooms_without_sockets_are_swept() -> None:
    async with arena_server_thread(sweep_interval_s=0.05, idle_timeout_s=0.2) as server:
        workspace = new_workspace()
        async with ArenaRest(server.base_url) as rest:
            await rest.create_robotics_room(workspace, "idle")
            await rest.create_robotics_room(workspace, "busy")
            await rest.create_video_room(workspace, "cam")
            ws, _ = await join(server.base_url, "robotics", workspace, "busy", "c", "consumer")
            gone: set[str] = set()

            async def poll() -> None:
                for kind, room in (("robotics", "idle"), ("video", "cam")):
                    try:
                        if kind == "video":
                            await rest.get_video_room(workspace, room)
                        else:
                            await rest.get_robotics_room(workspace, room)
                    except ArenaError as exc:
                        assert exc.status == 404
                        gone.add(room)

            async with asyncio.timeout(10):
                while gone != {"idle", "cam"}:
                    await poll()
                    await asyncio.sleep(0.05)
            # A room with a socket survives, however idle.
            assert (await rest.get_robotics_room(workspace, "busy"))["active_consumers"] == 1
            await ws.close()


async def test_oversize_frame_closes_only_that_socket(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    cons, _ = await join(arena.base_url, "robotics", workspace, "r", "c", "consumer")
    prod, _ = await join(arena.base_url, "robotics", workspace, "r", "p", "producer")
    huge = json.dumps({"type": "joint_update",
                       "data": [{"name": "a", "value": 1.0, "pad": "x" * MAX_MESSAGE_BYTES}]})
    await prod.send(huge)
    with pytest.raises(ConnectionClosed) as closed:
        await recv_json(prod)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
    assert (await rest.get_robotics_state(workspace, "r"))["joints"] == {}
    async with asyncio.timeout(10):  # the server unregisters the closed producer
        while (await rest.get_robotics_room(workspace, "r"))["has_producer"]:
            await asyncio.sleep(0.01)
    # The room goes on: a new producer can join and publish.
    prod2, got = await join(arena.base_url, "robotics", workspace, "r", "p2", "producer")
    assert got[-1]["type"] == "joined"
    await prod2.send(json.dumps({"type": "joint_update", "data": [{"name": "a", "value": 2}]}))
    assert (await recv_json(cons))["data"] == [{"name": "a", "value": 2}]
    for ws in (cons, prod2):
        await ws.close()


def test_cli_help_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "arena_server", "--help"],
                         capture_output=True, text=True, timeout=60, check=True)
    assert "--port" in out.stdout and "--host" in out.stdout


async def test_websocket_to_unknown_path_is_refused(arena: ArenaServerThread) -> None:
    with pytest.raises(websockets.exceptions.InvalidStatus):
        await websockets.connect(ws_url(arena.base_url, "nothing", "w", "r"), open_timeout=5)
