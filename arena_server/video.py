"""Video rooms: the server relays WebRTC signaling and room events, never media (doc §3)."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, WebSocket

from .common import (
    MAX_MESSAGE_BYTES,
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
from .schemas import CreateVideoRoom, SignalRequest, VideoConfig

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class VideoRoom(RoomBase):
    config: VideoConfig = field(default_factory=VideoConfig)
    recovery_config: dict[str, Any] | None = None
    frame_count: int = 0
    last_frame_time: str | None = None


def _relay(kind: str, conn: Connection, msg: dict[str, Any]) -> dict[str, Any] | None:
    """The message other participants get for a relayed event type, or None if not relayed."""
    pid = conn.participant_id
    if kind == "stream_started":
        return {"config": msg.get("config", {}), "participant_id": pid}
    if kind == "stream_stopped":
        return {"participant_id": pid, "reason": msg.get("reason")}
    if kind == "video_config_update":
        return {"config": msg.get("config", {}), "source": pid}
    if kind == "status_update":
        return {"status": msg.get("status", "unknown"), "data": msg.get("data")}
    if kind == "stream_stats":
        return {"stats": msg.get("stats", {})}
    if kind == "recovery_triggered":
        return {"policy": msg.get("policy"), "reason": msg.get("reason", "Recovery triggered")}
    return None


class VideoHub(Hub):
    def room(self, workspace_id: str, room_id: str) -> VideoRoom | None:
        room = self.get_room(workspace_id, room_id)
        return room if isinstance(room, VideoRoom) else None

    def info(self, room: VideoRoom) -> dict[str, Any]:
        return {
            "id": room.id,
            "workspace_id": room.workspace_id,
            "participants": room.participants_json(),
            "frame_count": room.frame_count,
            "config": room.config.model_dump(),
            "has_producer": room.producer is not None,
            "active_consumers": len(room.consumers),
        }

    async def announce(self, conn: Connection, kind: str) -> None:
        room = self.room(conn.workspace_id, conn.room_id)
        if room is None:
            return
        message = {
            "type": kind,
            "room_id": conn.room_id,
            "participant_id": conn.participant_id,
            "role": conn.role.value,
            "timestamp": now_iso(),
        }
        await self.broadcast(room, message, exclude=conn.participant_id)

    async def handle(self, conn: Connection, msg: dict[str, Any]) -> None:
        conn.message_count += 1
        kind = msg.get("type")
        room = self.room(conn.workspace_id, conn.room_id)
        if room is not None:
            room.touch()
        if kind == "heartbeat":
            await self.send_to(conn.participant_id, heartbeat_ack())
            return
        if room is None:
            return
        if kind == "emergency_stop":
            message = {
                "type": "emergency_stop",
                "reason": msg.get("reason") or "Emergency stop triggered",
                "source": conn.participant_id,
                "timestamp": now_iso(),
            }
            await self.broadcast(room, message)
            return
        if not isinstance(kind, str) or (body := _relay(kind, conn, msg)) is None:
            return  # unknown types are ignored on video sockets
        if kind == "video_config_update" and conn.role is Role.PRODUCER:
            self._update_config(room, msg.get("config"))
        message = {"type": kind, **body, "timestamp": now_iso()}
        await self.broadcast(room, message, exclude=conn.participant_id)

    @staticmethod
    def _update_config(room: VideoRoom, update: Any) -> None:
        if not isinstance(update, dict):
            return
        merged = {**room.config.model_dump(), **update}
        try:
            room.config = VideoConfig.model_validate(merged)
        except ValueError:
            logger.info("ignoring invalid video config update from producer of %s", room.id)

    async def signal(self, room: VideoRoom, client_id: str, message: dict[str, Any]) -> Any:
        """Forward one offer/answer/ice to the peer's WebSocket; the reference's result shape."""
        sender = self.connections.get(client_id)
        role = sender.role if sender is not None else None
        kind = message.get("type")
        if kind == "offer":
            target = message.get("target_consumer")
            if target and role is Role.PRODUCER:
                await self.send_to(str(target), {
                    "type": "webrtc_offer",
                    "offer": {"type": "offer", "sdp": message.get("sdp")},
                    "from_producer": client_id,
                    "timestamp": now_iso(),
                })
                return {"success": True, "message": "Offer forwarded to consumer"}
            return {"success": True, "message": "Peer-to-peer mode - no server WebRTC processing"}
        if kind == "answer":
            target = message.get("target_producer")
            if target:
                await self.send_to(str(target), {
                    "type": "webrtc_answer",
                    "answer": {"type": "answer", "sdp": message.get("sdp")},
                    "from_consumer": client_id,
                    "timestamp": now_iso(),
                })
                return {"success": True, "message": "Answer forwarded to producer"}
            return None
        if kind == "ice":
            to_consumer = message.get("target_consumer")
            to_producer = message.get("target_producer")
            ice = {"type": "webrtc_ice", "candidate": message.get("candidate")}
            if to_consumer and role is Role.PRODUCER:
                ice |= {"from_producer": client_id, "from_consumer": None, "timestamp": now_iso()}
                await self.send_to(str(to_consumer), ice)
                return {"success": True, "message": "ICE candidate forwarded to consumer"}
            if to_producer and role is Role.CONSUMER:
                ice |= {"from_producer": None, "from_consumer": client_id, "timestamp": now_iso()}
                await self.send_to(str(to_producer), ice)
                return {"success": True, "message": "ICE candidate forwarded to producer"}
        return None


def _not_found() -> HTTPException:
    return HTTPException(status_code=404, detail="Room not found")


def video_router(hub: VideoHub) -> APIRouter:
    router = APIRouter(prefix="/video", tags=["video"])

    @router.get("/workspaces/{workspace_id}/rooms")
    async def list_rooms(workspace_id: str) -> dict[str, Any]:
        rooms = [
            hub.info(r)
            for r in hub.workspaces.get(workspace_id, {}).values()
            if isinstance(r, VideoRoom)
        ]
        return {"success": True, "workspace_id": workspace_id, "rooms": rooms, "total": len(rooms)}

    @router.post("/workspaces/{workspace_id}/rooms")
    async def create_room(workspace_id: str, body: CreateVideoRoom | None = None) -> dict[str, Any]:
        body = body or CreateVideoRoom()
        room_id = body.room_id or str(uuid.uuid4())
        room = VideoRoom(
            id=room_id,
            workspace_id=workspace_id,
            config=body.config or VideoConfig(),
            recovery_config=body.recovery_config,
        )
        hub.put_room(room)
        return {
            "success": True,
            "workspace_id": workspace_id,
            "room_id": room_id,
            "message": f"Video room {room_id} created successfully in workspace {workspace_id}",
        }

    @router.get("/workspaces/{workspace_id}/rooms/{room_id}")
    async def get_room(workspace_id: str, room_id: str) -> dict[str, Any]:
        room = hub.room(workspace_id, room_id)
        if room is None:
            raise _not_found()
        return {"success": True, "workspace_id": workspace_id, "room": hub.info(room)}

    @router.get("/workspaces/{workspace_id}/rooms/{room_id}/state")
    async def get_state(workspace_id: str, room_id: str) -> dict[str, Any]:
        room = hub.room(workspace_id, room_id)
        if room is None:
            raise _not_found()
        state = {
            "room_id": room_id,
            "workspace_id": workspace_id,
            "participants": room.participants_json(),
            "frame_count": room.frame_count,
            "last_frame_time": room.last_frame_time,
            "current_config": room.config.model_dump(),
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
            "message": f"Video room {room_id} deleted successfully from workspace {workspace_id}",
        }

    @router.post("/workspaces/{workspace_id}/rooms/{room_id}/webrtc/signal")
    async def signal(workspace_id: str, room_id: str, body: SignalRequest) -> dict[str, Any]:
        room = hub.room(workspace_id, room_id)
        if room is None:
            raise HTTPException(
                status_code=400, detail=f"Room {room_id} not found in workspace {workspace_id}"
            )
        if len(json.dumps(body.message)) > MAX_MESSAGE_BYTES:
            raise HTTPException(status_code=413, detail="Signaling message too large")
        response = await hub.signal(room, body.client_id, body.message)
        return {"success": True, "workspace_id": workspace_id, "response": response}

    @router.websocket("/workspaces/{workspace_id}/rooms/{room_id}/ws")
    async def websocket(ws: WebSocket, workspace_id: str, room_id: str) -> None:
        refusal = {"type": "error", "message": "Cannot join room", "code": None,
                   "timestamp": now_iso()}
        conn = await join_socket(hub, ws, workspace_id, room_id, refusal)
        if conn is None:
            return
        try:
            joined = {
                "type": "joined",
                "room_id": room_id,
                "role": conn.role.value,
                "timestamp": now_iso(),
            }
            await send_json(ws, joined)
            await hub.announce(conn, "participant_joined")
            while (text := await receive_text(ws)) is not None:
                msg = decode_message(text)
                if msg is not None:
                    await hub.handle(conn, msg)
        finally:
            registered = hub.connections.get(conn.participant_id) is conn
            hub.unregister(conn)
            if registered:
                await hub.announce(conn, "participant_left")

    return router
