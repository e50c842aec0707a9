"""Arena base URLs with a path prefix (the public server lives under /api): REST and
WebSocket/WebRTC signalling URLs keep it, and https gives wss."""

from __future__ import annotations

import httpx
import pytest

from arena_server.launcher import LocalArenaServer
from orchestrator.arena.rest import ArenaRest, robotics_ws_url
from orchestrator.arena.robotics import RoboticsConsumer, RoboticsProducer
from orchestrator.arena.webrtc import http_to_ws, room_path
from tests.support.orchestrator import wait_for


@pytest.mark.parametrize(("base", "ws"), [
    ("http://host:8000/api", "ws://host:8000/api"),
    ("https://host/api/", "wss://host/api"),
    ("https://host", "wss://host"),
    ("http://127.0.0.1:8000", "ws://127.0.0.1:8000"),
])
def test_websocket_urls_keep_the_prefix(base: str, ws: str) -> None:
    assert robotics_ws_url(base, "w", "r") == f"{ws}/robotics/workspaces/w/rooms/r/ws"
    assert http_to_ws(base) + room_path("w", "r") + "/ws" == f"{ws}/video/workspaces/w/rooms/r/ws"


async def test_rest_and_websocket_clients_work_under_a_prefix() -> None:
    """A real room server under /api, as the public one is deployed."""
    with LocalArenaServer(prefix="/api") as server:
        assert server.base_url.endswith("/api")
        async with ArenaRest(server.base_url) as rest:
            await rest.create_robotics_room("w", "joints")
            rooms = await rest.list_robotics_rooms("w")
            assert [r["id"] for r in rooms] == ["joints"]
        root = server.base_url.removesuffix("/api")
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{root}/robotics/workspaces/w/rooms")).status_code == 404
            assert (await http.get(f"{root}/health")).status_code == 200
        consumer = RoboticsConsumer(server.base_url, "w", "joints", "c1")
        producer = RoboticsProducer(server.base_url, "w", "joints", "p1")
        await consumer.start()
        await producer.start()
        try:
            assert consumer.connected and producer.connected
            assert await producer.send_joints({"Rotation": 12.5})
            await wait_for(lambda: consumer.joints.get("Rotation") == 12.5, 5, "joint update")
        finally:
            await producer.stop()
            await consumer.stop()
