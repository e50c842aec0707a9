"""Pieces shared by the robotics and video halves of the room server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

logger = logging.getLogger(__name__)

# Guards. Generous enough for any sane joint or signaling message, small enough that one
# client cannot make the server buffer megabytes per message.
MAX_MESSAGE_BYTES = 256 * 1024
SEND_TIMEOUT_S = 5.0
JOIN_TIMEOUT_S = 60.0


class Role(StrEnum):
    PRODUCER = "producer"
    CONSUMER = "consumer"


def heartbeat_ack() -> dict[str, Any]:
    return {"type": "heartbeat_ack", "timestamp": now_iso()}


def now_iso() -> str:
    return datetime.now(tz=UTC).isoformat()


@dataclass(eq=False)
class Connection:
    """One joined WebSocket: the server's registration of a participant."""

    websocket: WebSocket
    workspace_id: str
    room_id: str
    participant_id: str
    role: Role
    connected_at: float = field(default_factory=time.monotonic)
    message_count: int = 0


@dataclass(eq=False)
class RoomBase:
    id: str
    workspace_id: str
    producer: str | None = None
    consumers: list[str] = field(default_factory=list)
    last_activity: float = field(default_factory=time.monotonic)

    def participants_json(self) -> dict[str, Any]:
        return {
            "producer": self.producer,
            "consumers": list(self.consumers),
            "total": len(self.consumers) + (1 if self.producer else 0),
        }

    def members(self) -> list[str]:
        return ([self.producer] if self.producer else []) + list(self.consumers)

    def touch(self) -> None:
        self.last_activity = time.monotonic()


def parse_join(text: str) -> tuple[str, Role] | None:
    """The join frame {"participant_id": str, "role": "producer"|"consumer"}; None if malformed."""
    if len(text) > MAX_MESSAGE_BYTES:
        return None
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    if not isinstance(msg, dict):
        return None
    pid, role = msg.get("participant_id"), msg.get("role")
    if not isinstance(pid, str) or not pid or len(pid) > 256:
        return None
    if role not in (Role.PRODUCER.value, Role.CONSUMER.value):
        return None
    return pid, Role(role)


def decode_message(text: str) -> dict[str, Any] | None:
    """A JSON object or None (invalid JSON, oversize and non-objects are dropped silently)."""
    if len(text) > MAX_MESSAGE_BYTES:
        logger.warning("dropping oversize message (%d bytes)", len(text))
        return None
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


async def receive_text(ws: WebSocket, timeout: float | None = None) -> str | None:
    """Next text frame; None when the socket is gone. Binary frames are skipped."""
    while True:
        try:
            event = await asyncio.wait_for(ws.receive(), timeout)
        except TimeoutError:
            return None
        if event["type"] == "websocket.disconnect":
            return None
        text = event.get("text")
        if text is not None:
            return str(text)


async def send_json(ws: WebSocket, message: dict[str, Any] | str) -> bool:
    """Send with a timeout so one stuck client cannot stall a whole room; False on failure."""
    text = message if isinstance(message, str) else json.dumps(message)
    try:
        await asyncio.wait_for(ws.send_text(text), SEND_TIMEOUT_S)
    except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError) as exc:
        logger.info("send failed: %r", exc)
        return False
    except Exception:  # the ASGI server may raise its own ClientDisconnected types
        logger.exception("send failed")
        return False
    return True


class Hub:
    """Rooms by workspace plus the global participant_id -> connection map (the quirk)."""

    def __init__(self) -> None:
        self.workspaces: dict[str, dict[str, RoomBase]] = {}
        self.connections: dict[str, Connection] = {}

    def get_room(self, workspace_id: str, room_id: str) -> RoomBase | None:
        return self.workspaces.get(workspace_id, {}).get(room_id)

    def put_room(self, room: RoomBase) -> None:
        # (quirk) an existing room with this id is replaced: participants and state are wiped.
        self.workspaces.setdefault(room.workspace_id, {})[room.id] = room

    def delete_room(self, workspace_id: str, room_id: str) -> bool:
        rooms = self.workspaces.get(workspace_id)
        if rooms is None or room_id not in rooms:
            return False
        # (quirk) participants are unregistered from the room but their sockets stay open.
        del rooms[room_id]
        if not rooms:
            del self.workspaces[workspace_id]
        return True

    def try_join(self, room: RoomBase, pid: str, role: Role) -> bool:
        if role is Role.PRODUCER:
            if room.producer is not None:
                return False
            room.producer = pid
        else:
            if pid in room.consumers:
                return False
            room.consumers.append(pid)
        room.touch()
        return True

    def leave(self, conn: Connection) -> None:
        room = self.get_room(conn.workspace_id, conn.room_id)
        if room is None:
            return
        if room.producer == conn.participant_id:
            room.producer = None
        elif conn.participant_id in room.consumers:
            room.consumers.remove(conn.participant_id)

    def evict(self, pid: str) -> None:
        """(quirk) A refused join reusing a registered id evicts the old registration."""
        old = self.connections.pop(pid, None)
        if old is not None:
            self.leave(old)

    def unregister(self, conn: Connection) -> None:
        # Only our own registration: a newer socket may have taken the id meanwhile.
        if self.connections.get(conn.participant_id) is conn:
            del self.connections[conn.participant_id]
            self.leave(conn)

    async def send_to(self, pid: str, message: dict[str, Any] | str) -> None:
        conn = self.connections.get(pid)
        if conn is not None and not await send_json(conn.websocket, message):
            self.unregister(conn)

    async def broadcast(
        self, room: RoomBase, message: dict[str, Any], *, consumers_only: bool = False,
        exclude: str | None = None,
    ) -> None:
        text = json.dumps(message)
        targets = list(room.consumers) if consumers_only else room.members()
        for pid in targets:
            if pid != exclude:
                await self.send_to(pid, text)

    def has_sockets(self, workspace_id: str, room_id: str) -> bool:
        return any(
            c.workspace_id == workspace_id and c.room_id == room_id
            for c in self.connections.values()
        )

    def sweep(self, idle_timeout_s: float) -> int:
        """Delete rooms without sockets idle for longer than idle_timeout_s."""
        now = time.monotonic()
        stale = [
            (ws, rid)
            for ws, rooms in self.workspaces.items()
            for rid, room in rooms.items()
            if now - room.last_activity > idle_timeout_s and not self.has_sockets(ws, rid)
        ]
        for ws, rid in stale:
            self.delete_room(ws, rid)
        return len(stale)


async def join_socket(
    hub: Hub, ws: WebSocket, workspace_id: str, room_id: str, refusal: dict[str, Any]
) -> Connection | None:
    """Accept, read the join frame and register. None when the join failed (already handled)."""
    await ws.accept()
    text = await receive_text(ws, JOIN_TIMEOUT_S)
    if text is None:
        return None
    parsed = parse_join(text)
    if parsed is None:
        # A malformed join is dropped: the handler returns and the transport goes away
        # without a close frame, exactly like the reference server.
        logger.info("malformed join frame in %s/%s", workspace_id, room_id)
        return None
    pid, role = parsed
    room = hub.get_room(workspace_id, room_id)
    if room is None or not hub.try_join(room, pid, role):
        hub.evict(pid)
        await send_json(ws, refusal)
        with contextlib.suppress(RuntimeError):
            await ws.close(code=1000)
        return None
    conn = Connection(ws, workspace_id, room_id, pid, role)
    hub.connections[pid] = conn
    return conn
