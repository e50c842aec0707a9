"""Robotics rooms: joint values as JSON over a WebSocket (protocol doc §1 and §2)."""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket

from .common import (
    Connection,
    Hub,
    Role,
    RoomBase,
    decode_message,
    heartbeat_ack,
    join_socket,
    now_iso,
    receive_text,
    send_json,
)
from .schemas import CreateRoboticsRoom, JointCommand

logger = logging.getLogger(__name__)

# Types the server knows but does not act on when a client sends them.
_IGNORED_TYPES = {"state_sync", "heartbeat_ack", "joined", "error"}


@dataclass(eq=False)
class RoboticsRoom(RoomBase):
    joints: dict[str, float] = field(default_factory=dict)
    name: str | None = None
    robot_type: str = "so-arm100"
    max_consumers: int = 10


def _valid_entries(data: Any) -> list[dict[str, Any]] | None:
    """Joint entries {name: str, value: finite number, ...extra keys}; None if any is bad."""
    if not isinstance(data, list):
        return None
    for entry in data:
        if not isinstance(entry, dict):
            return None
        name, value = entry.get("name"), entry.get("value")
        if not isinstance(name, str) or not name:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not math.isfinite(value):
            return None
    return data


class RoboticsHub(Hub):
    def room(self, workspace_id: str, room_id: str) -> RoboticsRoom | None:
        room = self.get_room(workspace_id, room_id)
        return room if isinstance(room, RoboticsRoom) else None

    def info(self, room: RoboticsRoom) -> dict[str, Any]:
        return {
            "id": room.id,
            "workspace_id": room.workspace_id,
            "participants": room.participants_json(),
            "joints_count": len(room.joints),
        }

    def apply(self, room: RoboticsRoom, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store the entries; return those whose value changed, exactly as sent (quirk)."""
        changed = []
        for entry in entries:
            if room.joints.get(entry["name"]) != entry["value"]:
                room.joints[entry["name"]] = entry["value"]
                changed.append(entry)
        if changed:
            room.touch()
        return changed

    async def publish(self, room: RoboticsRoom, entries: list[dict[str, Any]], source: str) -> int:
        changed = self.apply(room, entries)
        if changed:
            message = {
                "type": "joint_update",
                "data": changed,
                "timestamp": now_iso(),
                "source": source,
            }
            await self.broadcast(room, message, consumers_only=True, exclude=source)
        return len(changed)

    async def handle(self, conn: Connection, msg: dict[str, Any]) -> None:
        conn.message_count += 1
        kind = msg.get("type")
        room = self.room(conn.workspace_id, conn.room_id)
        if room is not None:
            room.touch()
        if kind == "joint_update":
            if conn.role is not Role.PRODUCER or not msg.get("data"):
                return  # a consumer's update, or an empty one, is ignored silently
            entries = _valid_entries(msg.get("data"))
            if entries is None or room is None:
                await self.send_to(conn.participant_id, _error("Failed to process joint update"))
                return
            await self.publish(room, entries, conn.participant_id)
        elif kind == "heartbeat":
            await self.send_to(conn.participant_id, heartbeat_ack())
        elif kind == "emergency_stop":
            reason = msg.get("reason") or f"Emergency stop from {conn.participant_id}"
            logger.warning("emergency stop in %s/%s: %s", conn.workspace_id, conn.room_id, reason)
            if room is not None:
                message = {
                    "type": "emergency_stop",
                    "timestamp": now_iso(),
                    "reason": reason,
                    "source": conn.participant_id,
                }
                await self.broadcast(room, message)
        elif kind in _IGNORED_TYPES:
            return
        else:
            await self.send_to(conn.participant_id, _error(f"Unknown message type: {kind}"))


def _error(message: str) -> dict[str, Any]:
    return {"type": "error", "message": message, "timestamp": now_iso()}


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="Room not found")


def robotics_router(hub: RoboticsHub) -> APIRouter:
    router = APIRouter(prefix="/robotics", tags=["robotics"])

    @router.get("/workspaces/{workspace_id}/rooms")
    async def list_rooms(workspace_id: str) -> dict[str, Any]:
        rooms = [
            hub.info(r)
            for r in hub.workspaces.get(workspace_id, {}).values()
            if isinstance(r, RoboticsRoom)
        ]
        return {"success": True, "workspace_id": workspace_id, "rooms": rooms, "total": len(rooms)}

    @router.post("/workspaces/{workspace_id}/rooms")
    async def create_room(
        workspace_id: str, body: CreateRoboticsRoom | None = None
    ) -> dict[str, Any]:
        body = body or CreateRoboticsRoom()
        room_id = body.room_id or str(uuid.uuid4())
        room = RoboticsRoom(
            id=room_id,
            workspace_id=workspace_id,
            name=body.name,
            robot_type=body.robot_type,
            max_consumers=body.max_consumers,
        )
        hub.put_room(room)
        return {
            "success": True,
            "workspace_id": workspace_id,
            "room_id": room_id,
            "message": f"Room {room_id} created successfully in workspace {workspace_id}",
        }

    @router.get("/workspaces/{workspace_id}/rooms/{room_id}")
    async def get_room(workspace_id: str, room_id: str) -> dict[str, Any]:
        room = hub.room(workspace_id, room_id)
        if room is None:
            raise _not_found()
        info = hub.info(room)
        info["has_producer"] = room.producer is not None
        info["active_consumers"] = len(room.consumers)
        return {"success": True, "workspace_id": workspace_id, "room": info}

    @router.get("/workspaces/{workspace_id}/rooms/{room_id}/state")
    async def get_state(workspace_id: str, room_id: str) -> dict[str, Any]:
        room = hub.room(workspace_id, room_id)
        if room is None:
            raise _not_found()
        state = {
            "room_id": room_id,
            "workspace_id": workspace_id,
            "joints": dict(room.joints),
            "participants": room.participants_json(),
            "timestamp": now_iso(),
        }
        return {"success": True, "workspace_id": workspace_id, "state": state}

    @router.delete("/workspaces/{workspace_id}/rooms/{room_id}")
    async def delete_room(workspace_id: str, room_id: str) -> dict[str, Any]:
        if hub.room(workspace_id, room_id) is None or not hub.delete_room(workspace_id, room_id):
            raise _not_found()
        return {
            "success": True,
            "workspace_id": workspace_id,
            "message": f"Room {room_id} deleted successfully from workspace {workspace_id}",
        }

    @router.post("/workspaces/{workspace_id}/rooms/{room_id}/command")
    async def command(workspace_id: str, room_id: str, body: JointCommand) -> dict[str, Any]:
        room = hub.room(workspace_id, room_id)
        if room is None:
            raise _not_found()
        entries = [j.model_dump(exclude_none=True) for j in body.joints]
        count = await hub.publish(room, entries, "api")
        return {
            "success": True,
            "workspace_id": workspace_id,
            "room_id": room_id,
            "joints_updated": count,
            "message": f"Updated {count} joints",
        }

    @router.websocket("/workspaces/{workspace_id}/rooms/{room_id}/ws")
    async def websocket(ws: WebSocket, workspace_id: str, room_id: str) -> None:
        refusal = {"type": "error", "message": "Cannot join room"}
        conn = await join_socket(hub, ws, workspace_id, room_id, refusal)
        if conn is None:
            return
        try:
            room = hub.room(workspace_id, room_id)
            if conn.role is Role.CONSUMER and room is not None:
                sync = {"type": "state_sync", "data": dict(room.joints), "timestamp": now_iso()}
                await send_json(ws, sync)
            joined = {
                "type": "joined",
                "room_id": room_id,
                "workspace_id": workspace_id,
                "role": conn.role.value,
                "timestamp": now_iso(),
            }
            await send_json(ws, joined)
            while (text := await receive_text(ws)) is not None:
                msg = decode_message(text)
                if msg is not None:
                    await hub.handle(conn, msg)
        finally:
            hub.unregister(conn)

    return router
