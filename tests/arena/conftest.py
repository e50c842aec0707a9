from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.server import ServerConnection, serve

from orchestrator.arena.rest import ArenaRest, new_workspace
from tests.support.arena import ArenaServerThread

WAIT_S = 10.0  # upper bound for "eventually": generous, never a timing assert


@pytest.fixture(scope="package")
def arena() -> Iterator[ArenaServerThread]:
    with ArenaServerThread() as server:
        yield server


@pytest.fixture
async def rest(arena: ArenaServerThread) -> AsyncIterator[ArenaRest]:
    client = ArenaRest(arena.base_url, timeout_s=5.0)
    yield client
    await client.aclose()


@pytest.fixture
def workspace() -> str:
    return new_workspace()


# -- another server: a real socket, messages our room server never sends -------------------
Handler = Callable[[ServerConnection], Awaitable[None]]


@pytest.fixture
async def fake_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers = []

    async def start(handler: Handler) -> str:
        server = await serve(handler, "127.0.0.1", 0)
        servers.append(server)
        port = next(iter(server.sockets)).getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.01)


def ws_url(base_url: str, kind: str, workspace: str, room: str) -> str:
    return base_url.replace("http://", "ws://") + f"/{kind}/workspaces/{workspace}/rooms/{room}/ws"


async def recv_json(ws: ClientConnection, timeout: float = WAIT_S) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    msg = json.loads(raw)
    assert isinstance(msg, dict)
    return msg


async def recv_type(ws: ClientConnection, kind: str, timeout: float = WAIT_S) -> dict[str, Any]:
    """Next message of a type, skipping others (e.g. heartbeat acks)."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if msg.get("type") == kind:
            return msg


async def assert_silent(ws: ClientConnection) -> None:
    """Nothing arrives: checked by a heartbeat round trip, so no sleep-based guess.

    The server handles one socket's frames in order, so once our heartbeat_ack is back any
    message the server had for us before it would have arrived first.
    """
    await ws.send(json.dumps({"type": "heartbeat"}))
    msg = await recv_json(ws)
    assert msg["type"] == "heartbeat_ack", f"unexpected message: {msg}"


async def join(base_url: str, kind: str, workspace: str, room: str, pid: str,
               role: str) -> tuple[ClientConnection, list[dict[str, Any]]]:
    """Raw join; returns the socket and the messages up to and including `joined`."""
    ws = await websockets.connect(ws_url(base_url, kind, workspace, room), open_timeout=WAIT_S)
    await ws.send(json.dumps({"participant_id": pid, "role": role}))
    got = []
    while True:
        msg = await recv_json(ws)
        got.append(msg)
        if msg["type"] in ("joined", "error"):
            return ws, got
