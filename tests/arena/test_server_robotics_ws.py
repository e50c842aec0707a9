"""The room server's robotics WebSocket, spoken raw over real loopback sockets."""

from __future__ import annotations

import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from orchestrator.arena.rest import ArenaRest
from tests.support.arena import ArenaServerThread

from .conftest import assert_silent, join, recv_json, recv_type, ws_url


async def test_consumer_gets_state_sync_then_joined_producer_only_joined(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    cons, got = await join(arena.base_url, "robotics", workspace, "r", "c1", "consumer")
    assert [m["type"] for m in got] == ["state_sync", "joined"]
    assert got[0]["data"] == {}
    assert got[1]["room_id"] == "r" and got[1]["workspace_id"] == workspace
    assert got[1]["role"] == "consumer" and got[1]["timestamp"].endswith("+00:00")
    prod, got = await join(arena.base_url, "robotics", workspace, "r", "p1", "producer")
    assert [m["type"] for m in got] == ["joined"]
    await prod.send(json.dumps({"type": "joint_update", "data": [{"name": "a", "value": 3}]}))
    await recv_type(cons, "joint_update")
    late, got = await join(arena.base_url, "robotics", workspace, "r", "c2", "consumer")
    assert got[0] == {**got[0], "type": "state_sync", "data": {"a": 3}}
    for ws in (cons, prod, late):
        await ws.close()


async def test_change_only_forwarding_keeps_extra_keys_and_never_echoes(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    cons, _ = await join(arena.base_url, "robotics", workspace, "r", "c", "consumer")
    prod, _ = await join(arena.base_url, "robotics", workspace, "r", "p", "producer")

    first = [{"name": "a", "value": 1.0, "speed": 5, "note": "x"}, {"name": "b", "value": 2.0}]
    await prod.send(json.dumps({"type": "joint_update", "data": first}))
    msg = await recv_json(cons)
    assert msg["type"] == "joint_update" and msg["source"] == "p"
    assert msg["data"] == first  # exactly as sent, extra keys kept

    # Unchanged values produce nothing; the next message the consumer sees is the change.
    await prod.send(json.dumps({"type": "joint_update", "data": first}))
    await prod.send(json.dumps({"type": "joint_update", "data": [
        {"name": "a", "value": 1.0}, {"name": "b", "value": 2.5}]}))
    msg = await recv_json(cons)
    assert msg["data"] == [{"name": "b", "value": 2.5}]
    await assert_silent(prod)  # the sender never receives its own joint_update

    # A consumer's joint_update is ignored silently: no error, no state change.
    await cons.send(json.dumps({"type": "joint_update", "data": [{"name": "a", "value": 9}]}))
    await assert_silent(cons)
    state = await rest.get_robotics_state(workspace, "r")
    assert state["joints"] == {"a": 1.0, "b": 2.5}
    for ws in (cons, prod):
        await ws.close()


async def test_emergency_stop_heartbeat_unknown_type_and_garbage(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    cons, _ = await join(arena.base_url, "robotics", workspace, "r", "c", "consumer")
    prod, _ = await join(arena.base_url, "robotics", workspace, "r", "p", "producer")

    await cons.send(json.dumps({"type": "emergency_stop", "reason": "hand in workspace"}))
    for ws in (cons, prod):  # everyone, the sender included
        msg = await recv_json(ws)
        assert msg["type"] == "emergency_stop"
        assert msg["reason"] == "hand in workspace" and msg["source"] == "c"

    await prod.send(json.dumps({"type": "heartbeat"}))
    assert (await recv_json(prod))["type"] == "heartbeat_ack"

    await prod.send(json.dumps({"type": "dance"}))
    msg = await recv_json(prod)
    assert msg["type"] == "error" and msg["message"] == "Unknown message type: dance"

    # Invalid JSON is dropped silently and the socket keeps working.
    await prod.send("{not json")
    await assert_silent(prod)
    # Bad joint entries get an error and change nothing.
    await prod.send(json.dumps({"type": "joint_update", "data": {"a": 1}}))
    assert (await recv_json(prod))["message"] == "Failed to process joint update"
    await prod.send(json.dumps({"type": "joint_update", "data": [{"name": "a", "value": "1"}]}))
    assert (await recv_json(prod))["message"] == "Failed to process joint update"
    assert (await rest.get_robotics_state(workspace, "r"))["joints"] == {}
    for ws in (cons, prod):
        await ws.close()


@pytest.mark.parametrize("case", ["no_room", "second_producer", "duplicate_consumer"])
async def test_refused_join_gets_error_and_close_1000(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str, case: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    keep, _ = await join(arena.base_url, "robotics", workspace, "r", "p", "producer")
    keep2, _ = await join(arena.base_url, "robotics", workspace, "r", "c", "consumer")
    room, pid, role = {
        "no_room": ("nope", "x", "consumer"),
        "second_producer": ("r", "p2", "producer"),
        "duplicate_consumer": ("r", "c", "consumer"),
    }[case]
    ws, got = await join(arena.base_url, "robotics", workspace, room, pid, role)
    assert got == [{"type": "error", "message": "Cannot join room"}]
    with pytest.raises(ConnectionClosedOK) as closed:
        await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    for sock in (keep, keep2):
        await sock.close()


async def test_malformed_join_is_dropped_without_close_frame(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    for frame in ("not json", json.dumps({"participant_id": "x", "role": "pilot"})):
        ws = await websockets.connect(ws_url(arena.base_url, "robotics", workspace, "r"))
        await ws.send(frame)
        with pytest.raises(ConnectionClosedError) as closed:
            await ws.recv()
        assert closed.value.rcvd is None  # no close frame from the server
    room = await rest.get_robotics_room(workspace, "r")
    assert room["participants"]["total"] == 0


async def test_refused_join_reusing_an_id_evicts_the_old_registration(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    """(quirk) participant_id is global: a refused join with a registered id evicts it."""
    await rest.create_robotics_room(workspace, "r")
    old, _ = await join(arena.base_url, "robotics", workspace, "r", "dup", "consumer")
    again, got = await join(arena.base_url, "robotics", workspace, "r", "dup", "consumer")
    assert got[-1]["type"] == "error"
    await again.close()
    room = await rest.get_robotics_room(workspace, "r")
    assert room["participants"]["consumers"] == []
    # The old socket is still open but gets nothing more; the same id can join afresh.
    fresh, got = await join(arena.base_url, "robotics", workspace, "r", "dup", "consumer")
    assert got[-1]["type"] == "joined"
    for ws in (old, fresh):
        await ws.close()


async def test_replace_on_create_and_delete_leave_sockets_open(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    await rest.create_robotics_room(workspace, "r")
    cons, _ = await join(arena.base_url, "robotics", workspace, "r", "c", "consumer")
    await rest.send_command(workspace, "r", {"a": 1.0})
    assert (await recv_json(cons))["source"] == "api"

    await rest.create_robotics_room(workspace, "r")  # (quirk) silently replaces the room
    room = await rest.get_robotics_room(workspace, "r")
    assert room["joints_count"] == 0 and room["participants"]["total"] == 0
    assert await rest.send_command(workspace, "r", {"a": 2.0}) == 1
    await assert_silent(cons)  # still open, no longer registered

    await rest.delete_robotics_room(workspace, "r")
    await assert_silent(cons)  # DELETE does not close sockets either
    await cons.close()
