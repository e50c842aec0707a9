"""A video room's emergency_stop reaches the VideoConsumer's owner, like a robotics room's."""

from __future__ import annotations

import json

from orchestrator.arena.rest import ArenaRest
from orchestrator.arena.video import VideoConsumer
from tests.arena.conftest import eventually, join, recv_type
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
