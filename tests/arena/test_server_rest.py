"""REST semantics of the room server, through our ArenaRest client and raw httpx."""

from __future__ import annotations

import uuid

import httpx
import pytest

from orchestrator.arena.rest import ArenaError, ArenaRest, ArenaUnavailable, new_workspace
from tests.support.arena import ArenaServerThread, free_port


async def test_health_and_cors(arena: ArenaServerThread, rest: ArenaRest) -> None:
    assert await rest.health() == {"status": "healthy", "server_running": True}
    async with httpx.AsyncClient(base_url=arena.base_url, timeout=5) as http:
        r = await http.options("/robotics/workspaces/w/rooms", headers={
            "Origin": "http://example.org", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] in ("*", "http://example.org")


async def test_robotics_room_lifecycle(rest: ArenaRest, workspace: str) -> None:
    assert await rest.list_robotics_rooms(workspace) == []  # unknown workspace: empty
    assert await rest.create_robotics_room(workspace, "r1") == "r1"
    picked = await rest.create_robotics_room(workspace)
    assert uuid.UUID(picked).version == 4
    rooms = await rest.list_robotics_rooms(workspace)
    assert sorted(r["id"] for r in rooms) == sorted(["r1", picked])
    assert rooms[0]["participants"] == {"producer": None, "consumers": [], "total": 0}

    room = await rest.get_robotics_room(workspace, "r1")
    assert room["has_producer"] is False and room["active_consumers"] == 0
    assert await rest.send_command(workspace, "r1", {"a": 10.0, "b": -5.0}) == 2
    assert await rest.send_command(workspace, "r1", {"a": 10.0, "b": -4.0}) == 1
    state = await rest.get_robotics_state(workspace, "r1")
    assert state["joints"] == {"a": 10.0, "b": -4.0} and state["workspace_id"] == workspace

    assert await rest.delete_robotics_room(workspace, "r1") is True
    with pytest.raises(ArenaError) as err:
        await rest.get_robotics_room(workspace, "r1")
    assert err.value.status == 404 and err.value.detail == "Room not found"
    assert await rest.delete_robotics_room(workspace, "r1", missing_ok=True) is False
    with pytest.raises(ArenaError):
        await rest.delete_robotics_room(workspace, "r1")
    # Rooms of another workspace are separate.
    assert await rest.list_robotics_rooms(new_workspace()) == []


async def test_video_room_lifecycle(rest: ArenaRest, workspace: str) -> None:
    await rest.create_video_room(workspace, "cam", config={
        "encoding": "vp8", "resolution": {"width": 320, "height": 240}, "framerate": 15})
    [entry] = await rest.list_video_rooms(workspace)
    assert entry["id"] == "cam" and entry["frame_count"] == 0
    assert entry["config"]["resolution"] == {"width": 320, "height": 240}
    state = await rest.get_video_state(workspace, "cam")
    assert state["current_config"]["framerate"] == 15 and state["last_frame_time"] is None
    await rest.create_video_room(workspace, "cam2")
    default = await rest.get_video_room(workspace, "cam2")
    assert default["config"]["resolution"] == {"width": 640, "height": 480}
    assert default["config"]["encoding"] == "vp8" and default["config"]["framerate"] == 30
    assert await rest.delete_video_room(workspace, "cam") is True
    with pytest.raises(ArenaError) as err:
        await rest.get_video_state(workspace, "cam")
    assert err.value.status == 404


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/robotics/workspaces/w/rooms", {"max_consumers": 0}),
        ("/robotics/workspaces/w/rooms", {"robot_type": "tank"}),
        ("/robotics/workspaces/w/rooms/r/command", {"joints": []}),
        ("/robotics/workspaces/w/rooms/r/command", {"joints": [{"name": "a", "value": 361}]}),
        ("/robotics/workspaces/w/rooms/r/command",
         {"joints": [{"name": f"j{i}", "value": 0} for i in range(21)]}),
        ("/video/workspaces/w/rooms", {"config": {"framerate": 0}}),
        ("/video/workspaces/w/rooms", {"config": {"bitrate": 10}}),
        ("/video/workspaces/w/rooms/r/webrtc/signal", {"message": {}}),
    ],
)
async def test_bad_bodies_get_422_and_change_nothing(
    arena: ArenaServerThread, path: str, body: dict[str, object]
) -> None:
    async with httpx.AsyncClient(base_url=arena.base_url, timeout=5) as http:
        await http.post("/robotics/workspaces/w/rooms", json={"room_id": "r"})
        before = (await http.get("/robotics/workspaces/w/rooms")).json()
        r = await http.post(path, json=body)
        assert r.status_code == 422
        detail = r.json()["detail"]
        assert isinstance(detail, list) and {"type", "loc", "msg"} <= set(detail[0])
        assert (await http.get("/robotics/workspaces/w/rooms")).json() == before


async def test_command_to_missing_room_is_404_and_signal_to_missing_room_is_400(
    rest: ArenaRest, workspace: str
) -> None:
    with pytest.raises(ArenaError) as err:
        await rest.send_command(workspace, "missing", {"a": 1.0})
    assert err.value.status == 404
    with pytest.raises(ArenaError) as err:
        await rest.signal(workspace, "missing", "me", {"type": "offer", "sdp": "v=0"})
    assert err.value.status == 400


async def test_unreachable_server_is_arena_unavailable() -> None:
    async with ArenaRest(f"http://127.0.0.1:{free_port()}", timeout_s=2.0) as rest:
        with pytest.raises(ArenaUnavailable):
            await rest.create_robotics_room(new_workspace(), "r")


def test_bad_base_url_and_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="http"):
        ArenaRest("ftp://host")
    with pytest.raises(ValueError, match="non-empty"):
        ArenaRest._room("robotics", "", "r")
