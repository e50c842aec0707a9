"""The video consumer rebuilds its connection: producer restart, media failure, server crash."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.arena.rest import ArenaRest
from orchestrator.arena.video import VideoConsumer
from sim_robot.camera import CameraSource
from sim_robot.video_producer import CameraProducer
from tests.arena.conftest import eventually
from tests.arena.video_helpers import decoded_frames, pid, running
from tests.support.arena import ArenaServerProcess, ArenaServerThread


async def test_rebuilds_after_producer_restart(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    room = await rest.create_video_room(workspace, "cam-restart")
    consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"))
    async with running(consumer):
        first = CameraSource(320, 240, fps=30)
        async with running(CameraProducer(arena.base_url, workspace, room, "cam-p", first)):
            before = await decoded_frames(consumer, 5)
        await eventually(lambda: not consumer.stats.connected, "old connection closed")
        seq_gap = consumer.stats.frames

        # Same participant id, new process-like instance with a new timeline.
        second = CameraSource(320, 240, fps=30)
        async with running(CameraProducer(arena.base_url, workspace, room, "cam-p", second)):
            after = await decoded_frames(consumer, 5)
            latest = consumer.latest()
    assert all(first.sent_at(i) is not None for i in before)
    assert all(second.sent_at(i) is not None for i in after)
    assert latest is not None and latest.seq > seq_gap
    # The producer's own join triggered the new offer. (Whether the consumer also re-joined
    # is a race: the old producer's RTCP BYE, over UDP, may end the track before the
    # server's participant_left, over the WebSocket, has removed the peer.)
    assert consumer.stats.offers == 2


async def test_rebuilds_after_media_failure(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    room = await rest.create_video_room(workspace, "cam-fail")
    source = CameraSource(320, 240, fps=30)
    consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"))
    producer = CameraProducer(arena.base_url, workspace, room, pid("producer"), source)
    async with running(consumer, producer):
        await decoded_frames(consumer, 5)
        # The producer's media dies while it stays in the room: only a re-join by the
        # consumer (which makes the producer offer again) can bring the video back.
        assert await producer.drop_peer_connections() == 1
        await eventually(lambda: consumer.stats.reconnects >= 1, "consumer re-joined")
        await decoded_frames(consumer, 5)
    assert consumer.stats.offers >= 2
    assert producer.stats.offers >= 2


async def test_rebuilds_after_video_stalls(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    room = await rest.create_video_room(workspace, "cam-stall")
    source = CameraSource(320, 240, fps=30)
    consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"),
                             stall_timeout_s=1.0)
    producer = CameraProducer(arena.base_url, workspace, room, pid("producer"), source)
    async with running(consumer, producer):
        await decoded_frames(consumer, 5)
        source.paused = True  # the connection stays up, the frames stop
        await eventually(lambda: consumer.stats.stalls >= 1, "stall noticed")
        await eventually(lambda: consumer.stats.reconnects >= 1, "re-joined")
        source.paused = False
        await decoded_frames(consumer, 5)
    assert producer.stats.offers >= 2


@pytest.fixture
def crashable_server() -> Iterator[ArenaServerProcess]:
    with ArenaServerProcess() as server:
        yield server


async def test_rebuilds_after_server_crash(crashable_server: ArenaServerProcess) -> None:
    server = crashable_server
    workspace, room = "ws-crash", "cam-crash"
    async with ArenaRest(server.base_url) as rest:
        await rest.create_video_room(workspace, room)
    source = CameraSource(320, 240, fps=30)
    consumer = VideoConsumer(server.base_url, workspace, room, pid("consumer"),
                             backoff_max_s=1.0)
    producer = CameraProducer(server.base_url, workspace, room, pid("producer"), source,
                              backoff_max_s=1.0)
    async with running(consumer, producer):
        await decoded_frames(consumer, 5)
        server.kill()  # SIGKILL: sockets vanish without close frames; rooms are lost
        await eventually(lambda: not consumer.stats.joined, "consumer noticed the crash", 30)
        server.start()
        async with ArenaRest(server.base_url) as rest:
            await rest.create_video_room(workspace, room)  # state was in memory
        await eventually(lambda: consumer.stats.joined and producer.stats.joined, "re-joined", 30)
        await decoded_frames(consumer, 5)
    assert consumer.stats.reconnects >= 1 and producer.stats.reconnects >= 1


async def test_rebuilds_a_connection_that_never_delivers_a_frame(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    """The stall timeout began at the first frame: a connection that came up without one
    (a producer whose camera had not started) was never rebuilt."""
    room = await rest.create_video_room(workspace, "cam-silent")
    source = CameraSource(320, 240, fps=30)
    source.paused = True  # from the start: connected, no frame ever
    consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"),
                             stall_timeout_s=1.0)
    producer = CameraProducer(arena.base_url, workspace, room, pid("producer"), source)
    async with running(consumer, producer):
        await eventually(lambda: consumer.stats.stalls >= 1, "the silence noticed")
        await eventually(lambda: consumer.stats.reconnects >= 1, "re-joined")
        assert consumer.stats.frames == 0
        source.paused = False
        await decoded_frames(consumer, 5)
