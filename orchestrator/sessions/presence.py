"""Which joint-input rooms have their robot connected: one poll per room server and
workspace, shared by every session of this event loop that watches a room in it.

An Arena server tells robotics-room participants nothing when a producer joins or leaves,
so a session learns whether its robot is still connected (a robot standing still sends no
joints, and its last values stay current only while it is connected) by asking the REST
API. One request costs ~1.4 ms of this process's CPU (httpx, measured here), every second;
sessions in one workspace now share one list of its rooms instead of asking one each.
The same listings show whom the server still counts in a room: a room deleted or made
again under its id keeps our sockets open, unregistered (a quirk), and those re-join.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.arena.rest import ArenaRest

log = logging.getLogger(__name__)


# Video rooms are listed every this many polls: a consumer the server no longer counts
# still gets frames from its peer connection, so it only matters once that connection ends.
VIDEO_EVERY = 5


@dataclass
class _Listing:
    """One kind's rooms, as the last answered listing gave them."""

    members: dict[str, frozenset[str] | None] = field(default_factory=dict)  # room -> ids
    answered: bool = False  # the last listing got an answer
    asked_at: float = 0.0  # monotonic, when the last answered listing was sent

    def registered(self, room: str, participant_id: str, since: float | None) -> bool | None:
        if not self.answered or since is None or self.asked_at <= since:
            return None
        members = self.members.get(room, frozenset())  # a room not listed: deleted
        return None if members is None else participant_id in members

    def listed(self, room: str) -> bool | None:
        return room in self.members if self.answered else None


class WorkspacePresence:
    """The producers of one workspace's robotics rooms, polled every ``period_s``, and
    who is in its video rooms, every ``VIDEO_EVERY`` polls while a user has cameras."""

    def __init__(self, base_url: str, workspace: str, timeout_s: float, period_s: float) -> None:
        self.base_url, self.workspace, self.period_s = base_url, workspace, period_s
        self._rest = ArenaRest(base_url, timeout_s=timeout_s)
        self._producers: dict[str, bool] = {}
        self._robotics, self._video = _Listing(), _Listing()
        self.polls = self.video_polls = 0
        self.users = self.video_users = 0  # video_users: those with cameras
        self._task: asyncio.Task[None] | None = None

    def has_producer(self, room: str) -> bool:
        """False while the server does not answer: the robot is assumed gone."""
        return self._robotics.answered and self._producers.get(room, False)

    def registered(self, room: str, participant_id: str, since: float | None) -> bool | None:
        """Whether the server counts ``participant_id`` in robotics room ``room``, by a poll
        sent after ``since`` (its join); None when no such poll has answered."""
        return self._robotics.registered(room, participant_id, since)

    def video_registered(self, room: str, participant_id: str,
                         since: float | None) -> bool | None:
        """The same for a video room."""
        return self._video.registered(room, participant_id, since)

    def video_room_listed(self, room: str) -> bool | None:
        """Whether the last video listing had ``room``; None when it did not answer."""
        return self._video.listed(room)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"presence-{self.workspace}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._rest.aclose()

    async def _run(self) -> None:
        while True:
            listed = await self._list(self._robotics, self._rest.list_robotics_rooms)
            if listed is not None:
                self._producers = {str(r.get("id")): _has_producer(r) for r in listed}
            if self.video_users > 0 and self.polls % VIDEO_EVERY == 0:
                self.video_polls += 1
                await self._list(self._video, self._rest.list_video_rooms)
            self.polls += 1
            await asyncio.sleep(self.period_s)

    async def _list(self, into: _Listing, lister: Callable[[str], Awaitable[list[Any]]]
                    ) -> list[dict[str, Any]] | None:
        try:
            asked_at = time.monotonic()
            listed = [r for r in await lister(self.workspace) if isinstance(r, dict)]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # server restarting: assume absent until it answers
            into.answered = False
            log.debug("presence in workspace %s: poll failed: %s", self.workspace, exc)
            return None
        into.members = {str(r.get("id")): _members(r) for r in listed}
        into.answered, into.asked_at = True, asked_at
        return listed


def _has_producer(room: dict[str, Any]) -> bool:
    participants = room.get("participants")
    return isinstance(participants, dict) and bool(participants.get("producer"))


def _members(room: dict[str, Any]) -> frozenset[str] | None:
    """Its participants' ids; None when the listing does not name them (another server's
    shape: membership is then unknown, never taken for "not registered")."""
    participants = room.get("participants")
    consumers = participants.get("consumers") if isinstance(participants, dict) else None
    if not isinstance(participants, dict) or not isinstance(consumers, list):
        return None
    return frozenset(i for i in (participants.get("producer"), *consumers) if isinstance(i, str))


class RoomClient(Protocol):
    """A robotics room client, as far as membership goes."""

    room_id: str
    participant_id: str
    joined_at: float | None

    @property
    def connected(self) -> bool: ...
    def rejoin(self, why: str) -> None: ...


def rejoin_unregistered(board: WorkspacePresence, clients: Iterable[RoomClient]) -> None:
    """A robotics room re-created under its id (a robot or page making "its" rooms) keeps
    our sockets open but no longer counts them: joints stop arriving while the robot shows
    as present. The poll shows whom the server counts: those it does not, join again."""
    for client in clients:
        if client.connected and board.registered(
                client.room_id, client.participant_id, client.joined_at) is False:
            client.rejoin("no longer registered in its room (re-created?)")


_BOARDS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], WorkspacePresence]
] = weakref.WeakKeyDictionary()


def acquire(base_url: str, workspace: str, timeout_s: float,
            period_s: float = 1.0, video: bool = False) -> WorkspacePresence:
    """The running loop's board for this workspace (its poll starts with the first user);
    ``video``: this user has cameras, so video rooms are listed too."""
    boards = _BOARDS.setdefault(asyncio.get_running_loop(), {})
    board = boards.get((base_url, workspace))
    if board is None:
        board = boards[(base_url, workspace)] = WorkspacePresence(
            base_url, workspace, timeout_s, period_s)
        board.start()
    board.users += 1
    board.video_users += video
    return board


async def release(board: WorkspacePresence, video: bool = False) -> None:
    """Stop using ``board`` (``video`` as acquired); the last user stops its poll."""
    board.users -= 1
    board.video_users -= video
    if board.video_users == 0:
        board._video = _Listing()  # a listing kept meanwhile would be stale when next read
    if board.users > 0:
        return
    boards = _BOARDS.get(asyncio.get_running_loop(), {})
    if boards.get((board.base_url, board.workspace)) is board:
        del boards[(board.base_url, board.workspace)]
    await board.close()


def boards() -> list[WorkspacePresence]:
    """The running loop's boards (for tests and stats)."""
    return list(_BOARDS.get(asyncio.get_running_loop(), {}).values())
