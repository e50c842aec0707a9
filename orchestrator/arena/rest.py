"""Async REST client of an Arena transport server: rooms in workspaces, commands, signaling.

Every call has a deadline (the whole call, not each read: a server that drips its answer
a byte at a time held a create forever). Failures come out as two types only:
`ArenaUnavailable` (cannot connect, timed out, connection dropped) and
`ArenaError` (the server answered with an HTTP error: `.status`, `.detail`; or,
`NotArena`, with a success that lacks what every Arena answer carries).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import httpx

DEFAULT_TIMEOUT_S = 5.0


class ArenaUnavailable(Exception):
    """The Arena server cannot be reached (connection refused, timeout, dropped)."""


class ArenaError(Exception):
    """The Arena server refused a request."""

    def __init__(self, status: int, detail: Any, message: str | None = None) -> None:
        self.status = status
        self.detail = detail
        super().__init__(message or f"Arena server answered {status}: {detail}")


class NotArena(ArenaError):
    """A success answer without what an Arena server puts in it (no Arena API there)."""

    def __init__(self, status: int, detail: Any, missing: str) -> None:
        super().__init__(status, detail, f"Arena server answered {status} without {missing!r}"
                         f" (is it an Arena API?): {str(detail)[:200]}")


class JoinRefused(ArenaError):
    """A WebSocket join was refused ({"type": "error", "message": "Cannot join room"})."""

    def __init__(self, detail: str) -> None:
        super().__init__(0, detail, f"join refused: {detail}")


def new_workspace() -> str:
    """A fresh workspace id: the protocol creates a workspace by using a new uuid4 in a path."""
    return str(uuid.uuid4())


def check_base_url(base_url: str) -> str:
    """'http(s)://host[:port]' without a trailing slash; ValueError otherwise."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Arena base URL must be http(s)://host[:port], got {base_url!r}")
    return base_url.rstrip("/")


Role = Literal["producer", "consumer"]  # a participant's role, in every kind of room


def unique_participant_id(room_id: str, role: str) -> str:
    """participant_id is global on the server (quirk): make it unique per room, role and run."""
    return f"{room_id}-{role}-{uuid.uuid4().hex[:8]}"


def robotics_ws_url(base_url: str, workspace: str, room_id: str) -> str:
    base = check_base_url(base_url)
    scheme = "wss" if base.startswith("https") else "ws"
    return f"{scheme}{base[base.index(':'):]}/robotics/workspaces/{workspace}/rooms/{room_id}/ws"


def _seg(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"workspace and room ids must be non-empty strings, got {value!r}")
    return quote(value, safe="")


class ArenaRest:
    def __init__(
        self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self._deadline_s = timeout_s
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s), transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ArenaRest:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            async with asyncio.timeout(self._deadline_s):
                response = await self._client.request(method, path, json=json)
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise ArenaUnavailable(f"{method} {self.base_url}{path} timed out") from exc
        except httpx.TransportError as exc:
            raise ArenaUnavailable(f"{method} {self.base_url}{path} failed: {exc!r}") from exc
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            detail = body.get("detail", body) if isinstance(body, dict) else body
            raise ArenaError(response.status_code, detail)
        return body

    async def _field(self, method: str, path: str, key: str, json: Any = None) -> Any:
        """``key`` of the answer's JSON object, which every Arena answer of that call has."""
        body = await self._request(method, path, json)
        if not isinstance(body, dict) or key not in body:
            raise NotArena(200, body, key)
        return body[key]

    async def health(self) -> dict[str, Any]:
        body = await self._request("GET", "/health")
        return body if isinstance(body, dict) else {"raw": body}

    # -- robotics rooms ------------------------------------------------------------------
    async def create_robotics_room(
        self, workspace: str, room_id: str | None = None, **options: Any
    ) -> str:
        """Create (quirk: or silently replace) a robotics room; returns its id."""
        body = {**options, **({"room_id": room_id} if room_id else {})}
        room = await self._field("POST", f"/robotics/workspaces/{_seg(workspace)}/rooms",
                                 "room_id", body)
        return str(room)

    async def list_robotics_rooms(self, workspace: str) -> list[dict[str, Any]]:
        return list(await self._field("GET", f"/robotics/workspaces/{_seg(workspace)}/rooms",
                                      "rooms"))

    async def get_robotics_room(self, workspace: str, room_id: str) -> dict[str, Any]:
        return dict(await self._field("GET", self._room("robotics", workspace, room_id), "room"))

    async def get_robotics_state(self, workspace: str, room_id: str) -> dict[str, Any]:
        return dict(await self._field(
            "GET", self._room("robotics", workspace, room_id) + "/state", "state"))

    async def delete_robotics_room(
        self, workspace: str, room_id: str, *, missing_ok: bool = False
    ) -> bool:
        return await self._delete("robotics", workspace, room_id, missing_ok)

    async def send_command(
        self, workspace: str, room_id: str, joints: Mapping[str, float]
    ) -> int:
        """POST .../command; returns how many joints changed (consumers get source 'api')."""
        body = {"joints": [{"name": k, "value": float(v)} for k, v in joints.items()]}
        answer = await self._request(
            "POST", self._room("robotics", workspace, room_id) + "/command", body
        )
        return int(answer.get("joints_updated", 0))

    # -- video rooms ---------------------------------------------------------------------
    async def create_video_room(
        self, workspace: str, room_id: str | None = None, *,
        config: Mapping[str, Any] | None = None,
    ) -> str:
        body: dict[str, Any] = {}
        if room_id:
            body["room_id"] = room_id
        if config is not None:
            body["config"] = dict(config)
        room = await self._field("POST", f"/video/workspaces/{_seg(workspace)}/rooms", "room_id",
                                 body)
        return str(room)

    async def list_video_rooms(self, workspace: str) -> list[dict[str, Any]]:
        return list(await self._field("GET", f"/video/workspaces/{_seg(workspace)}/rooms",
                                      "rooms"))

    async def get_video_room(self, workspace: str, room_id: str) -> dict[str, Any]:
        return dict(await self._field("GET", self._room("video", workspace, room_id), "room"))

    async def get_video_state(self, workspace: str, room_id: str) -> dict[str, Any]:
        return dict(await self._field(
            "GET", self._room("video", workspace, room_id) + "/state", "state"))

    async def delete_video_room(
        self, workspace: str, room_id: str, *, missing_ok: bool = False
    ) -> bool:
        return await self._delete("video", workspace, room_id, missing_ok)

    async def signal(
        self, workspace: str, room_id: str, client_id: str, message: Mapping[str, Any]
    ) -> dict[str, Any]:
        """POST .../webrtc/signal: offer/answer/ice relayed to the peer's WebSocket."""
        body = {"client_id": client_id, "message": dict(message)}
        answer = await self._request(
            "POST", self._room("video", workspace, room_id) + "/webrtc/signal", body
        )
        return answer if isinstance(answer, dict) else {"raw": answer}

    # -- helpers -------------------------------------------------------------------------
    @staticmethod
    def _room(kind: str, workspace: str, room_id: str) -> str:
        return f"/{kind}/workspaces/{_seg(workspace)}/rooms/{_seg(room_id)}"

    async def _delete(self, kind: str, workspace: str, room_id: str, missing_ok: bool) -> bool:
        try:
            await self._request("DELETE", self._room(kind, workspace, room_id))
        except ArenaError as exc:
            if missing_ok and exc.status == 404:
                return False
            raise
        return True
