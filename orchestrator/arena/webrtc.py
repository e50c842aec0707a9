"""WebRTC plumbing shared by the video consumer and the simulated camera producer.

Video rooms carry signaling only: the peers exchange SDP and ICE candidates through
`POST /video/workspaces/{ws}/rooms/{room}/webrtc/signal` and receive the peer's messages
on their room WebSocket. This module holds the small, protocol-level pieces both sides
need: joining a video room, posting signals, the room client (candidates: candidates.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from orchestrator.arena.messages import (
    EmergencyStop,
    ErrorMessage,
    Ignored,
    Joined,
    Malformed,
    VideoMessage,
    parse_video,
)
from orchestrator.arena.rest import (
    ArenaError,
    ArenaRest,
    ArenaUnavailable,
    JoinRefused,
    Role,
    check_base_url,
)

logger = logging.getLogger(__name__)

# Signaling messages are small (an SDP with many candidates is a few kB); the cap bounds memory.
MAX_MESSAGE_BYTES = 1024 * 1024
# Signaling messages waiting for their handler; beyond this a room is flooding us.
MAX_QUEUED_SIGNALS = 256


def rtc_configuration(ice_servers: Sequence[RTCIceServer] = ()) -> RTCConfiguration:
    # An explicit (possibly empty) list: aiortc's default is a public STUN server, which is
    # unreachable offline and would stall gathering for seconds.
    return RTCConfiguration(iceServers=list(ice_servers))


def http_to_ws(base_url: str) -> str:
    base = check_base_url(base_url)
    return ("wss" if base.startswith("https") else "ws") + base[base.index(":") :]


def room_path(workspace: str, room_id: str) -> str:
    return f"/video/workspaces/{quote(workspace, safe='')}/rooms/{quote(room_id, safe='')}"


def backoff_delay(attempt: int, initial_s: float, max_s: float) -> float:
    """Exponential backoff with jitter, so many clients do not reconnect in lockstep."""
    delay: float = min(max_s, initial_s * (2 ** min(attempt, 16)))
    return delay * (0.5 + random.random() / 2)


async def join_video_room(
    base_url: str, workspace: str, room_id: str, participant_id: str, role: Role,
    timeout_s: float, on_stop: Callable[[EmergencyStop], None] | None = None,
) -> ClientConnection:
    """Open the room's WebSocket and complete the join handshake. Raises JoinRefused when
    the server says no, ArenaUnavailable when it cannot be reached or does not confirm the
    join in time (a malformed join is never answered). An emergency stop read before the
    confirmation goes to ``on_stop`` at once, whatever the join's outcome."""
    url = http_to_ws(base_url) + room_path(workspace, room_id) + "/ws"
    try:
        ws = await connect(
            url, open_timeout=timeout_s, proxy=None, max_size=MAX_MESSAGE_BYTES,
            ping_interval=10, ping_timeout=10, close_timeout=2,
        )
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise ArenaUnavailable(f"cannot connect to {url}: {exc!r}") from exc
    try:
        await ws.send(json.dumps({"participant_id": participant_id, "role": role}))
        async with asyncio.timeout(timeout_s):
            while True:
                msg = parse_video(await ws.recv())
                if isinstance(msg, Joined):
                    return ws
                if isinstance(msg, EmergencyStop) and on_stop is not None:
                    on_stop(msg)
                elif isinstance(msg, ErrorMessage):
                    raise JoinRefused(msg.message)
    except BaseException as exc:
        await ws.close()
        if isinstance(exc, TimeoutError):
            raise ArenaUnavailable(f"{url}: no 'joined' within {timeout_s} s") from exc
        if isinstance(exc, WebSocketException | OSError):
            raise ArenaUnavailable(f"{url}: join failed: {exc!r}") from exc
        raise


@dataclass
class RoomStats:
    malformed: int = 0  # messages dropped because they did not match the protocol
    ignored: int = 0  # valid messages of a type this client has no use for
    reconnects: int = 0  # successful re-joins after the first join
    joined: bool = False  # the room's WebSocket is joined right now


class VideoRoomClient:
    """A participant of one video room: join, read messages, re-join with backoff, clean up.

    Subclasses handle the messages and own their peer connections.
    """

    role: Role

    def __init__(
        self, base_url: str, workspace: str, room_id: str, participant_id: str, *,
        timeout_s: float, backoff_initial_s: float, backoff_max_s: float,
        ice_servers: Sequence[RTCIceServer], stats: RoomStats,
    ) -> None:
        self.base_url = check_base_url(base_url)
        for what, value in (("workspace", workspace), ("room_id", room_id),
                            ("participant_id", participant_id)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{what} must be a non-empty string, got {value!r}")
        if not (timeout_s > 0 and 0 < backoff_initial_s <= backoff_max_s):
            raise ValueError("timeouts and backoff delays must be positive (initial <= max)")
        self.workspace = workspace
        self.room_id = room_id
        self.participant_id = participant_id
        self.timeout_s = timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.ice_servers = list(ice_servers)
        self._room_stats = stats
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._rest: ArenaRest | None = None
        self._stopping = False
        self.joined_at: float | None = None  # monotonic, of the current socket's join

    async def start(self) -> None:
        """Join the room (raises ArenaUnavailable / JoinRefused), then keep re-joining in the
        background whenever the socket drops, until stop()."""
        if self._runner is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._stopping = False
        self._rest = ArenaRest(self.base_url, timeout_s=self.timeout_s)
        try:
            ws = await join_video_room(self.base_url, self.workspace, self.room_id,
                                       self.participant_id, self.role, self.timeout_s,
                                       self._on_emergency_stop)
        except BaseException:
            await self._rest.aclose()
            self._rest = None
            raise
        self._runner = asyncio.create_task(self._run(ws), name=f"{self.role}-{self.room_id}")

    async def stop(self) -> None:
        """Leave the room, close every peer connection, cancel and await every task."""
        self._stopping = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        await self._close_peers()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._rest is not None:
            await self._rest.aclose()
            self._rest = None
        self._room_stats.joined = False

    # -- hooks ------------------------------------------------------------------------------

    async def _on_joined(self) -> None:
        """Called after each successful join."""

    def _on_emergency_stop(self, msg: EmergencyStop) -> None:
        """An emergency stop read in the room, joining included (latch it here, at once)."""

    async def _handle(self, msg: VideoMessage) -> bool:
        """Act on one validated message; False if it is malformed for this role."""
        raise NotImplementedError

    async def _close_peers(self) -> None:
        """Close every peer connection (socket gone or stopping)."""

    # -- machinery --------------------------------------------------------------------------

    @property
    def rest(self) -> ArenaRest:
        if self._rest is None:
            raise RuntimeError("not started")
        return self._rest

    async def signal(self, message: dict[str, Any]) -> bool:
        """Post one offer/answer/ice for the peer; False (logged) if it did not get through."""
        try:
            await self.rest.signal(self.workspace, self.room_id, self.participant_id, message)
        except (ArenaError, ArenaUnavailable) as exc:
            logger.warning("%s %s: signal %s failed: %s", self.role, self.room_id,
                           message.get("type"), exc)
            return False
        return True

    async def _run(self, ws: ClientConnection | None) -> None:
        attempt = 0
        while not self._stopping:
            if ws is None:
                try:
                    ws = await join_video_room(
                        self.base_url, self.workspace, self.room_id, self.participant_id,
                        self.role, self.timeout_s, self._on_emergency_stop,
                    )
                except (ArenaUnavailable, JoinRefused) as exc:
                    logger.info("%s %s: join failed: %s", self.role, self.room_id, exc)
                    await asyncio.sleep(
                        backoff_delay(attempt, self.backoff_initial_s, self.backoff_max_s)
                    )
                    attempt += 1
                    continue
                self._room_stats.reconnects += 1
            attempt = 0
            try:
                await self._session(ws)
            except Exception:  # a bug must not end the supervision: log it, re-join
                logger.exception("%s %s: session failed", self.role, self.room_id)
            finally:
                self._room_stats.joined = False
                self._ws = None
                await ws.close()
                await self._close_peers()
            ws = None
            if not self._stopping:
                # A short pause even after a clean close, so a flapping room cannot spin us.
                await asyncio.sleep(backoff_delay(0, self.backoff_initial_s, self.backoff_max_s))

    async def _session(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._room_stats.joined = True
        self.joined_at = time.monotonic()
        logger.info("%s %s: joined as %s", self.role, self.room_id, self.participant_id)
        await self._on_joined()
        # Signaling is handled in order by a task of its own: an offer or a candidate can
        # take seconds (ICE gathering, an mDNS name to resolve), and an emergency stop read
        # behind it must not wait for it.
        queue: asyncio.Queue[VideoMessage] = asyncio.Queue(MAX_QUEUED_SIGNALS)
        handler = asyncio.create_task(self._handle_queued(queue), name=f"signals-{self.room_id}")
        handler.add_done_callback(self._on_handler_done)
        try:
            async for raw in ws:
                msg = parse_video(raw)
                if isinstance(msg, Malformed):
                    logger.debug("%s %s: malformed: %s", self.role, self.room_id, msg.reason)
                    self._room_stats.malformed += 1
                elif isinstance(msg, Ignored):
                    self._room_stats.ignored += 1
                elif isinstance(msg, EmergencyStop):
                    await self._handle(msg)  # at once: latched before anything queued runs
                elif queue.full():
                    self._room_stats.malformed += 1  # a flood: dropped, never buffered
                else:
                    queue.put_nowait(msg)
        except WebSocketException as exc:
            logger.info("%s %s: socket closed: %r", self.role, self.room_id, exc)
        finally:
            handler.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await handler

    def _on_handler_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # a bug: join again
            logger.error("%s %s: signaling failed", self.role, self.room_id,
                         exc_info=task.exception())
            self.rejoin(f"signaling failed: {task.exception()!r}")

    async def _handle_queued(self, queue: asyncio.Queue[VideoMessage]) -> None:
        while True:
            if not await self._handle(await queue.get()):
                self._room_stats.malformed += 1

    def rejoin(self, reason: str) -> None:
        """Drop the socket; the supervisor joins again (a joining consumer gets a new offer)."""
        ws = self._ws
        if ws is None or self._stopping:
            return
        logger.info("%s %s: re-joining (%s)", self.role, self.room_id, reason)
        self._ws = None
        self._spawn(ws.close())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s %s: task failed", self.role, self.room_id,
                         exc_info=task.exception())


async def close_pc(pc: RTCPeerConnection, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await pc.close()
    except TimeoutError:
        logger.warning("closing a peer connection timed out")
