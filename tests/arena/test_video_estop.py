"""A video room's emergency_stop reaches the VideoConsumer's owner, like a robotics room's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection

from orchestrator.arena.rest import ArenaRest
from orchestrator.arena.video import VideoConsumer
from tests.arena.conftest import Handler, eventually, join, recv_type
from tests.arena.video_helpers import pid, running
from tests.support.arena import ArenaServerThread


async def test_emergency_stop_in_a_video_room_calls_back_with_the_reason(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    room = await rest.create_video_room(workspace, "front")
    stops: list[str] = []

    def on_stop(reason: str) -> None:
        stops.append(reason)
        if len(stops) == 1:
            raise RuntimeError("a failing callback must not break the consumer")

    consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"),
                             on_emergency_stop=on_stop)
    async with running(consumer):
        operator, _ = await join(arena.base_url, "video", workspace, room, pid("ui"), "consumer")
        try:
            await operator.send(json.dumps({"type": "emergency_stop", "reason": "hand in cell"}))
            await recv_type(operator, "emergency_stop")
            await eventually(lambda: stops == ["hand in cell"], "the first callback")
            # No reason given: the server fills one in.
            await operator.send(json.dumps({"type": "emergency_stop"}))
            await eventually(lambda: len(stops) == 2, "the second callback")
        finally:
            await operator.close()
        assert stops[1]  # whatever the server says, a reason is passed on
        assert consumer.stats.emergency_stops == 2
        assert consumer.stats.malformed == 0 and consumer.stats.joined


async def test_an_emergency_stop_is_not_held_up_by_slow_signaling(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages were handled one after another, so a stop read behind a slow signal waited
    for it. Injected: a candidate that takes 2 s, as a browser's unresolvable
    ``<uuid>.local`` one costs aioice 1 s each (reaching that for real needs a producer
    that trickles candidates after its offer, which our tools do not)."""
    room = await rest.create_video_room(workspace, "front")
    events: list[str] = []

    async def slow_candidate(producer: str, candidate: object) -> None:
        events.append("candidate begun")
        await asyncio.sleep(2.0)
        events.append("candidate done")

    consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"),
                             on_emergency_stop=lambda reason: events.append(f"stop: {reason}"))
    monkeypatch.setattr(consumer, "_on_candidate", slow_candidate)
    async with running(consumer):
        robot = pid("robot")
        producer, _ = await join(arena.base_url, "video", workspace, room, robot, "producer")
        operator, _ = await join(arena.base_url, "video", workspace, room, pid("ui"), "consumer")
        try:
            await rest.signal(workspace, room, robot, {
                "type": "ice", "target_consumer": consumer.participant_id, "candidate": {
                    "candidate": "candidate:1 1 UDP 2122252543 10.0.0.9 50000 typ host",
                    "sdpMid": "0", "sdpMLineIndex": 0}})
            await eventually(lambda: "candidate begun" in events, "the slow signal")
            await operator.send(json.dumps({"type": "emergency_stop", "reason": "now"}))
            await eventually(lambda: "stop: now" in events, "the stop")
            assert events == ["candidate begun", "stop: now"]  # not behind the signal
        finally:
            await operator.close()
            await producer.close()


async def test_an_emergency_stop_sent_before_the_join_is_confirmed_latches(
    fake_server: Callable[[Handler], Awaitable[str]],
) -> None:
    """A server that relays a stop between registering a consumer and confirming its join
    (our room server gives no such window; another may): the join dropped everything but
    ``joined`` and ``error``, and the stop was lost. The robotics join delivers it; this
    join runs again at every re-join. A real socket, that server's message order."""
    async def handler(ws: ServerConnection) -> None:
        await ws.recv()  # join frame
        await ws.send(json.dumps({"type": "emergency_stop", "reason": "hand in cell"}))
        await ws.send(json.dumps({"type": "joined", "room_id": "r", "role": "consumer"}))
        await ws.wait_closed()

    stops: list[str] = []
    consumer = VideoConsumer(await fake_server(handler), "w", "r", pid("consumer"),
                             on_emergency_stop=stops.append)
    async with running(consumer):
        assert stops == ["hand in cell"]  # delivered before the join returned
        await eventually(lambda: consumer.stats.joined, "the session on the joined socket")
        assert consumer.stats.emergency_stops == 1
