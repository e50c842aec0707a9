"""The joint-input rooms' producers and whom the server counts in a room, polled once per
workspace for every session in it, against a real room server and real room clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from orchestrator.arena.rest import ArenaRest, new_workspace
from orchestrator.arena.robotics import RoboticsProducer
from orchestrator.arena.video import VideoConsumer
from orchestrator.sessions import presence
from tests.support.arena import ArenaServerThread


@pytest.fixture(scope="module")
def arena() -> Iterator[ArenaServerThread]:
    with ArenaServerThread() as server:
        yield server


async def _until(predicate: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_sessions_in_one_workspace_share_one_poll_that_sees_producers_come_and_go(
    arena: ArenaServerThread,
) -> None:
    ws = new_workspace()
    async with ArenaRest(arena.base_url) as rest:
        for room in ("a", "b"):
            await rest.create_robotics_room(ws, room)
    first = presence.acquire(arena.base_url, ws, 5.0, period_s=0.1)
    second = presence.acquire(arena.base_url, ws, 5.0, period_s=0.1)
    other = presence.acquire(arena.base_url, new_workspace(), 5.0, period_s=0.1)
    assert first is second and other is not first and first.users == 2
    robot = RoboticsProducer(arena.base_url, ws, "a", "robot-a")
    try:
        await _until(lambda: first.polls >= 2, "polls")
        assert not first.has_producer("a") and not first.has_producer("b")
        await robot.start()
        await _until(lambda: first.has_producer("a"), "the producer of room a")
        assert not first.has_producer("b") and not other.has_producer("a")
        await robot.stop()
        await _until(lambda: not first.has_producer("a"), "room a's producer gone")
    finally:
        await robot.stop()
        await presence.release(second)
        assert first in presence.boards()  # one user left: still polling
        polls = first.polls
        await _until(lambda: first.polls > polls, "a poll with one user")
        await presence.release(first)
        await presence.release(other)
    assert presence.boards() == []
    polls = first.polls
    await asyncio.sleep(0.3)
    assert first.polls == polls  # the last user stopped it


async def test_a_server_that_does_not_answer_means_no_producer(
    arena: ArenaServerThread,
) -> None:
    board = presence.acquire("http://127.0.0.1:9", new_workspace(), 0.5, period_s=0.1)
    try:
        await _until(lambda: board.polls >= 1, "a failed poll")
        assert not board.has_producer("anything")
    finally:
        await presence.release(board)


def test_membership_is_unknown_where_a_listing_does_not_name_participants() -> None:
    """A listing of another shape (counts instead of ids) must never read as "not
    registered": every session would re-join its rooms every second."""
    assert presence._members({"participants": {"producer": "p", "consumers": ["c1", "c2"]}}) == {
        "p", "c1", "c2"}
    assert presence._members({"participants": {"producer": None, "consumers": []}}) == frozenset()
    assert presence._members({"participants": {"producer": "p", "consumers": 2}}) is None
    assert presence._members({"participants": 3}) is None and presence._members({}) is None


async def test_video_rooms_show_whom_the_server_counts_every_few_polls(
    arena: ArenaServerThread,
) -> None:
    """A video room deleted under a joined consumer keeps its socket open: only the
    listing tells that the server no longer counts it."""
    ws = new_workspace()
    async with ArenaRest(arena.base_url) as rest:
        await rest.create_video_room(ws, "cam")
        consumer = VideoConsumer(arena.base_url, ws, "cam", "cam-consumer")
        await consumer.start()
        board = presence.acquire(arena.base_url, ws, 5.0, period_s=0.05, video=True)
        try:
            def counted() -> bool | None:
                return board.video_registered("cam", "cam-consumer", consumer.joined_at)

            assert counted() is None  # no listing sent after the join has answered yet
            await _until(lambda: counted() is True, "the consumer counted")
            await rest.delete_video_room(ws, "cam")
            polls = board.polls
            await _until(lambda: counted() is False, "the consumer no longer counted")
            assert consumer.stats.joined  # the socket stayed open (the server's quirk)
            assert board.polls - polls <= presence.VIDEO_EVERY + 1
        finally:
            await presence.release(board, video=True)
            await consumer.stop()


async def test_video_rooms_are_listed_only_while_a_user_has_cameras(
    arena: ArenaServerThread,
) -> None:
    """A workspace whose sessions have no cameras costs one request a second, not more."""
    ws = new_workspace()
    async with ArenaRest(arena.base_url) as rest:
        await rest.create_video_room(ws, "cam")
        consumer = VideoConsumer(arena.base_url, ws, "cam", "cam-consumer")
        await consumer.start()
        joints_only = presence.acquire(arena.base_url, ws, 5.0, period_s=0.02)
        try:
            await _until(lambda: joints_only.polls >= 3 * presence.VIDEO_EVERY, "polls")
            assert joints_only.video_polls == 0
            assert joints_only.video_room_listed("cam") is None
            with_cameras = presence.acquire(arena.base_url, ws, 5.0, video=True)
            assert with_cameras is joints_only
            await _until(lambda: joints_only.video_registered(
                "cam", "cam-consumer", consumer.joined_at) is True, "the consumer counted")
            await presence.release(with_cameras, video=True)
            assert joints_only.video_room_listed("cam") is None  # nothing stale kept
            video_polls, polls = joints_only.video_polls, joints_only.polls
            await _until(lambda: joints_only.polls >= polls + 3 * presence.VIDEO_EVERY,
                         "polls after the last camera left")
            assert joints_only.video_polls == video_polls
        finally:
            await presence.release(joints_only)
            await consumer.stop()
