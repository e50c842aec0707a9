"""Servers at a session's Arena URL that answer HTTP but are no Arena server, or barely
answer: the create ends in bounded time with a 5xx that says why, and leaves nothing.
Both are real sockets on loopback, each writing the bytes its fault is made of."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from orchestrator.triton.launcher import LocalTriton
from tests.e2e.conftest import e2e_settings
from tests.support.arena import ArenaServerProcess
from tests.support.orchestrator import run_orchestrator

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
