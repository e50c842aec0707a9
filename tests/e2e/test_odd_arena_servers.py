"""Servers at a session's Arena URL that answer HTTP but are no Arena server, or barely
answer: the create ends in bounded time with a 5xx that says why, and leaves nothing. And
the real room server behind a proxy that holds its room deletes, as a slow server would.
All are real sockets on loopback, each writing the bytes its fault is made of."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.arena.rest import ArenaRest
from orchestrator.triton.launcher import LocalTriton
from tests.e2e.conftest import e2e_settings
from tests.support.arena import ArenaServerProcess, free_port
from tests.support.orchestrator import Orchestrator, run_orchestrator
from tests.support.proxy import slow_deletes

Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def http_server(reply: Reply) -> AsyncIterator[str]:
    """A server that reads each request's head and answers every one with ``reply``."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                await reply(writer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def _success_without_rooms(writer: asyncio.StreamWriter) -> None:
    body = b'{"success": true}'
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()


async def _drip(writer: asyncio.StreamWriter) -> None:
    """A 200 that promises a megabyte and sends a byte every 0.3 s: no single read times out."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000000\r\n\r\n")
    while True:
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(0.3)


async def test_a_server_that_is_no_arena_api_is_a_502(
    e2e_triton: LocalTriton, arena: ArenaServerProcess,
) -> None:
    """A 200 without `room_id` to a room create: a KeyError, answered as a 500."""
    async with (http_server(_success_without_rooms) as url,
                run_orchestrator(e2e_settings(e2e_triton)) as orch):
        response = await orch.http.post("/sessions", json={
            "session_id": "not-arena", "policy_path": "tiny_act", "camera_names": ["front"],
            "arena_server_url": url})
        assert response.status_code == 502, response.text
        assert "room_id" in response.json()["detail"]
        assert orch.manager.sessions() == []


async def test_a_server_that_drips_its_answer_ends_the_create_in_time(
    e2e_triton: LocalTriton, arena: ArenaServerProcess,
) -> None:
    """Each read got a byte within the timeout, so the create waited forever and held the
    session id (a delete said 200, the id stayed taken)."""
    settings = e2e_settings(e2e_triton, arena_timeout_s=1.0)
    async with http_server(_drip) as url, run_orchestrator(settings) as orch:
        body = {"session_id": "drip", "policy_path": "tiny_act", "camera_names": ["front"],
                "arena_server_url": url}
        response = await asyncio.wait_for(orch.http.post("/sessions", json=body), 30)
        assert response.status_code == 503, response.text
        assert "timed out" in response.json()["detail"], response.text
        assert orch.manager.sessions() == []
        # The id is free again: a create against the real server takes it.
        body["arena_server_url"] = arena.base_url
        assert (await orch.http.post("/sessions", json=body)).status_code == 200
        assert (await orch.http.delete("/sessions/drip")).status_code == 200


@dataclass
class SlowDelete:
    orch: Orchestrator
    rest: ArenaRest  # the room server itself, not through the proxy
    body: dict[str, Any]  # the session's create request
    first: asyncio.Task[httpx.Response]  # its delete, under way with its room deletes held


@contextlib.asynccontextmanager
async def deleting_slowly(e2e_triton: LocalTriton, arena: ArenaServerProcess, sid: str,
                          workspace: str) -> AsyncIterator[SlowDelete]:
    """A session created through a proxy that holds each room delete for 0.5 s, and its
    delete sent 0.2 s before this yields."""
    async with (slow_deletes(arena.base_url, 0.5) as proxy,
                run_orchestrator(e2e_settings(e2e_triton)) as orch,
                ArenaRest(arena.base_url) as rest):
        body = {"session_id": sid, "policy_path": "tiny_act", "camera_names": ["front"],
                "arena_server_url": proxy.url, "workspace_id": workspace}
        assert (await orch.http.post("/sessions", json=body)).status_code == 200
        first = asyncio.create_task(orch.http.delete(f"/sessions/{sid}"))
        await asyncio.sleep(0.2)
        yield SlowDelete(orch, rest, body, first)


async def test_a_create_during_the_delete_of_its_id_keeps_its_rooms(
    e2e_triton: LocalTriton, arena: ArenaServerProcess,
) -> None:
    """The id was free once the delete began, so a create of it went ahead while the old
    session was still deleting its rooms, which have the same names: the new session's
    camera room went with them, and it waited for frames that could never come."""
    workspace = "delete-then-create"
    async with deleting_slowly(e2e_triton, arena, "again", workspace) as held:
        created = await held.orch.http.post("/sessions", json=held.body)
        assert (await held.first).status_code == 200
        assert created.status_code == 200, created.text
        rooms = created.json()
        video = {r["id"] for r in await held.rest.list_video_rooms(workspace)}
        robotics = {r["id"] for r in await held.rest.list_robotics_rooms(workspace)}
        assert set(rooms["camera_room_ids"].values()) <= video, video
        assert {rooms["joint_input_room_id"], rooms["joint_output_room_id"]} <= robotics
        assert (await held.orch.http.delete("/sessions/again")).status_code == 200
        assert await held.rest.list_video_rooms(workspace) == []


async def test_a_second_delete_answers_once_the_first_has_removed_the_rooms(
    e2e_triton: LocalTriton, arena: ArenaServerProcess,
) -> None:
    """A delete sent while another delete of the session ran got its 404 at once, while the
    rooms were still there: a caller that took either answer as "gone" and re-created the
    id raced the first close. (A fleet worker's sweep and an API delete meet this way.)"""
    workspace = "delete-twice"
    async with deleting_slowly(e2e_triton, arena, "twice", workspace) as held:
        second = await held.orch.http.delete("/sessions/twice")
        assert second.status_code == 404, second.text
        assert await held.rest.list_video_rooms(workspace) == []
        assert await held.rest.list_robotics_rooms(workspace) == []
        assert (await held.first).status_code == 200


async def test_a_loopback_arena_url_is_reached_at_the_loopback_alias(
    e2e_triton: LocalTriton, arena: ArenaServerProcess
) -> None:
    """In a container (docker compose), loopback is the container itself: the RobotHub
    page's ``http://localhost:8000`` (the room server's published port on the host) was a
    503 there. ``ORCHESTRATOR_ARENA_LOOPBACK_URL`` names where that server is reached from
    the orchestrator; here a port with nothing on it stands for the container's loopback."""
    settings = e2e_settings(e2e_triton).model_copy(update={"arena_loopback_url": arena.base_url})
    async with run_orchestrator(settings) as orch:
        body = {"session_id": "aliased", "policy_path": "tiny_act", "camera_names": ["front"],
                "transport_server_url": f"http://localhost:{free_port()}"}
        response = await orch.http.post("/sessions", json=body)
        assert response.status_code == 200, response.text
        rooms = response.json()
        status = await orch.status("aliased")
        assert status["rooms"]["arena_server_url"] == arena.base_url
        async with ArenaRest(arena.base_url) as rest:
            listed = {r["id"] for r in await rest.list_robotics_rooms(rooms["workspace_id"])}
            assert rooms["joint_input_room_id"] in listed
        assert (await orch.http.delete("/sessions/aliased")).status_code == 200
