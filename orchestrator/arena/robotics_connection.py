"""The connection under both robotics room clients (robotics.py has the two).

Each joins with their own timeout, heartbeat, surface `emergency_stop` to their owner through a
callback, and reconnect with backoff (re-joining) when the server or the network drops; the
consumer keeps its known joint state across reconnects. `start()` makes the first connection
and raises if it fails; after that the client owns one background task that `stop()` cancels
and awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .messages import (
    EmergencyStop,
    ErrorMessage,
    Ignored,
    Joined,
    JointUpdate,
    Malformed,
    StateSync,
    deliver_emergency_stop,
    parse_robotics,
)
from .rest import (
    ArenaError,
    ArenaRest,
    ArenaUnavailable,
    JoinRefused,
    Role,
    check_base_url,
    robotics_ws_url,
    unique_participant_id,
)

logger = logging.getLogger(__name__)

EmergencyCallback = Callable[[str], None]
# A connection that lasted less than this before dropping counts as a failed join (backoff).
STABLE_CONNECTION_S = 5.0


@dataclass
class RoboticsStats:
    connected: bool = False
    messages: int = 0  # valid messages received
    malformed: int = 0  # dropped: bad JSON, bad fields, binary frames
    ignored: int = 0  # valid JSON of a type we have no use for
    readings: int = 0  # joint readings: joint_update, non-empty state_sync
    reconnects: int = 0  # successful re-joins after the first join
    connect_failures: int = 0
    server_errors: int = 0  # {"type": "error"} received after joining
    emergency_stops: int = 0
    heartbeats_sent: int = 0
    sent: int = 0  # joint_update messages sent (producer)
    send_dropped: int = 0  # send_joints while disconnected or failing
    dropped_names: int = 0  # new joint names beyond the consumer's bound
    invalid_entries: int = 0  # joint entries dropped from a message whose others were kept
    last_error: str | None = None


class RoboticsConnection:
    role: Role

    def __init__(
        self,
        base_url: str,
        workspace: str,
        room_id: str,
        participant_id: str | None = None,
        *,
        on_emergency_stop: EmergencyCallback | None = None,
        join_timeout_s: float = 5.0,
        heartbeat_interval_s: float = 5.0,
        liveness_timeout_s: float = 15.0,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        send_timeout_s: float = 2.0,
        recreate_room: bool = False,
        rest_timeout_s: float = 5.0,
    ) -> None:
        self.base_url = check_base_url(base_url)
        self.workspace = workspace
        self.room_id = room_id
        self.participant_id = participant_id or unique_participant_id(room_id, self.role)
        self.url = robotics_ws_url(base_url, workspace, room_id)
        self.on_emergency_stop = on_emergency_stop
        self.stats = RoboticsStats()
        self._join_timeout_s = join_timeout_s
        self._heartbeat_s = heartbeat_interval_s
        self._liveness_s = liveness_timeout_s
        self._backoff = (reconnect_min_s, reconnect_max_s)
        self._send_timeout_s = send_timeout_s
        self._recreate_room = recreate_room
        self._rest_timeout_s = rest_timeout_s
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_rx = 0.0
        self.joined_at: float | None = None  # monotonic, of the current connection's join
        self._closing: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.stats.connected

    async def start(self) -> None:
        """Connect and join once (raises ArenaUnavailable / JoinRefused); then run."""
        if self._task is not None:
            return
        self._ws = await self._connect_and_join()
        self._task = asyncio.create_task(self._run(), name=f"arena-{self.role}-{self.room_id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_ws()

    async def __aenter__(self) -> RoboticsConnection:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def describe(self) -> dict[str, Any]:
        return {"room_id": self.room_id, "participant_id": self.participant_id,
                "role": self.role, **asdict(self.stats)}

    # -- connection ----------------------------------------------------------------------
    async def _connect_and_join(self) -> ClientConnection:
        try:
            # No permessage-deflate: a session's joint traffic is ~10 KB/s of ~300-byte
            # messages; deflating each costs ~20 us of CPU per message (both ends, measured).
            ws = await connect(
                self.url, open_timeout=self._join_timeout_s, close_timeout=1.0,
                max_size=1024 * 1024, ping_interval=None, compression=None,
            )
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self._fail(f"connect to {self.url} failed: {exc!r}")
            raise ArenaUnavailable(f"cannot connect to {self.url}: {exc!r}") from exc
        try:
            await self._join(ws)
        except JoinRefused as exc:
            await ws.close()
            self._fail(str(exc))
            if self._recreate_room and await self._room_missing():
                raise JoinRefused("room was missing and has been recreated; retry") from exc
            raise
        except BaseException as exc:
            await ws.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            self._fail(f"join failed: {exc!r}")
            raise ArenaUnavailable(f"join of {self.url} failed: {exc!r}") from exc
        self.stats.connected = True
        self.joined_at = time.monotonic()
        return ws

    def rejoin(self, why: str) -> None:
        """End the connection (the client then joins again): for a socket the server no
        longer counts (a room re-created under its id keeps the old sockets open)."""
        if self._ws is not None and self._task is not None:
            logger.warning("%s %s: re-joining %s: %s", self.role, self.participant_id,
                           self.room_id, why)
            self.stats.last_error = why
            self._closing = asyncio.get_running_loop().create_task(self._ws.close())

    async def _join(self, ws: ClientConnection) -> None:
        await ws.send(json.dumps({"participant_id": self.participant_id, "role": self.role}))
        async with asyncio.timeout(self._join_timeout_s):
            while True:
                msg = parse_robotics(await ws.recv())
                self._last_rx = time.monotonic()
                if isinstance(msg, ErrorMessage):
                    raise JoinRefused(msg.message)
                if isinstance(msg, Joined):
                    return
                self._dispatch(msg)  # state_sync, or anything racing with `joined`

    async def _room_missing(self) -> bool:
        """(Owner only) recreate our room if the server lost it, e.g. after a restart."""
        rest = ArenaRest(self.base_url, timeout_s=self._rest_timeout_s)
        try:
            await rest.get_robotics_room(self.workspace, self.room_id)
            return False
        except ArenaError as exc:
            if exc.status != 404:
                return False
            await rest.create_robotics_room(self.workspace, self.room_id)
            logger.warning("recreated missing robotics room %s/%s", self.workspace, self.room_id)
            return True
        except ArenaUnavailable:
            return False
        finally:
            await rest.aclose()

    def _fail(self, why: str) -> None:
        self.stats.connect_failures += 1
        self.stats.last_error = why
        logger.info("%s %s: %s", self.role, self.participant_id, why)

    async def _close_ws(self) -> None:
        ws, self._ws = self._ws, None
        self.stats.connected = False
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)

    async def _run(self) -> None:
        delay = self._backoff[0]
        while True:
            if self._ws is None:
                try:
                    self._ws = await self._connect_and_join()
                except Exception as exc:
                    if not isinstance(exc, ArenaUnavailable | ArenaError):
                        logger.exception("unexpected error while re-joining %s", self.room_id)
                    # Full jitter so a crowd of clients does not re-join in lockstep.
                    await asyncio.sleep(random.uniform(0.5, 1.0) * delay)
                    delay = min(delay * 2, self._backoff[1])
                    continue
                self.stats.reconnects += 1
                logger.info("%s %s re-joined %s", self.role, self.participant_id, self.room_id)
                self._on_rejoin()
            joined_at = time.monotonic()
            try:
                await self._pump(self._ws)
            except Exception as exc:  # a message no handler expected: re-join, never die
                logger.exception("%s %s: error in %s's messages", self.role,
                                 self.participant_id, self.room_id)
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            await self._close_ws()
            if time.monotonic() - joined_at < STABLE_CONNECTION_S:
                # Joined, then dropped at once (a proxy, an overloaded server): back off, or
                # this would re-join in a tight loop.
                await asyncio.sleep(random.uniform(0.5, 1.0) * delay)
                delay = min(delay * 2, self._backoff[1])
            else:
                delay = self._backoff[0]

    async def _pump(self, ws: ClientConnection) -> None:
        """Receive until the connection dies; heartbeat when idle; give up when silent."""
        while True:
            try:
                async with asyncio.timeout(self._heartbeat_s):
                    raw = await ws.recv()
            except TimeoutError:
                if time.monotonic() - self._last_rx > self._liveness_s:
                    self.stats.last_error = "no message from server (liveness timeout)"
                    return
                if not await self._send(ws, {"type": "heartbeat"}):
                    return
                self.stats.heartbeats_sent += 1
                continue
            except ConnectionClosed as exc:
                self.stats.last_error = f"connection closed: {exc!r}"
                return
            self._last_rx = time.monotonic()
            self._dispatch(parse_robotics(raw))

    async def _send(self, ws: ClientConnection, message: dict[str, Any] | str) -> bool:
        text = message if isinstance(message, str) else json.dumps(message)
        try:
            if ws.transport.get_write_buffer_size() == 0:
                # Nothing queued: the frame goes to the socket now and the send cannot wait
                # on flow control, so it needs no timer (arming one costs as much as the
                # send). Behind a backlog the send may wait on the peer: bound it.
                await ws.send(text)
            else:
                await asyncio.wait_for(ws.send(text), self._send_timeout_s)
        except (ConnectionClosed, TimeoutError, OSError) as exc:
            self.stats.last_error = f"send failed: {exc!r}"
            return False
        return True

    # -- messages ------------------------------------------------------------------------
    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, Malformed):
            self.stats.malformed += 1
            logger.debug("dropped malformed message: %s", msg.reason)
            return
        if isinstance(msg, Ignored):
            self.stats.ignored += 1
            return
        self.stats.messages += 1
        if isinstance(msg, EmergencyStop):
            self.stats.emergency_stops += 1
            deliver_emergency_stop(msg, self.on_emergency_stop, self.room_id)
        elif isinstance(msg, ErrorMessage):
            self.stats.server_errors += 1
            self.stats.last_error = f"server error: {msg.message}"
            logger.info("server error in room %s: %s", self.room_id, msg.message)
        elif isinstance(msg, JointUpdate | StateSync):
            self._on_joints(msg)

    def _on_joints(self, msg: JointUpdate | StateSync) -> None:
        """Joint data seen by this client; only the consumer keeps it."""

    def _on_rejoin(self) -> None:
        """Hook after a successful re-join."""
