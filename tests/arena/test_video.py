"""Video over real WebRTC (aiortc on both ends) through the local room server on loopback."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiortc import AudioStreamTrack, RTCPeerConnection, RTCSessionDescription

from orchestrator.arena.rest import ArenaRest, ArenaUnavailable, JoinRefused
from orchestrator.arena.video import VideoConsumer
from orchestrator.arena.webrtc import rtc_configuration
from sim_robot.camera import CameraSource, CameraTrack
from sim_robot.video_producer import CameraProducer, IceMode
from tests.arena.conftest import eventually, join, recv_type
from tests.arena.video_helpers import decoded_frames, pid, running, sample
from tests.support.arena import ArenaServerThread, free_port


async def test_640x480_at_least_20_fps_with_frame_index_read_back(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    room = await rest.create_video_room(workspace, "front")
    source = CameraSource(640, 480, fps=30)
    consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"))
    producer = CameraProducer(arena.base_url, workspace, room, pid("producer"), source)
    async with running(consumer, producer):
        await decoded_frames(consumer, 5)  # connected and warmed up
        # fps >= 20 is the spec's functional requirement; counted over 3 s so one hiccup of
        # a loaded machine does not decide it.
        window = await sample(consumer, source, 3.0)
        # A caller that looks rarely gets the newest frame, not a backlog.
        await asyncio.sleep(0.5)
        latest = consumer.latest()
        assert latest is not None and latest.seq == consumer.stats.frames
        assert consumer.latest() is latest  # nothing new arrived in between: same frame
        # The watchdog's question (how old is the newest frame) converts nothing: the next
        # frame stays pending until an observation takes it.
        await eventually(lambda: (consumer.newest_arrival() or 0) > latest.arrived_at,
                         "a frame newer than the one taken")
        arrived = consumer.newest_arrival()
        assert arrived is not None and arrived > latest.arrived_at
        assert consumer._pending is not None and consumer._pending[1] == arrived
        assert consumer.latest().arrived_at == arrived  # type: ignore[union-attr]

    assert window.fps >= 20, f"{window.fps:.1f} fps over {window.seconds:.1f} s"
    assert latest is not None
    assert latest.rgb.shape == (480, 640, 3) and latest.rgb.dtype == np.uint8
    # The index reads back from (nearly) every frame despite VP8, and frames come in order.
    assert window.seen > 0 and len(window.decoded) >= 0.95 * window.seen
    assert window.decoded == sorted(window.decoded) and len(set(window.decoded)) == len(
        window.decoded
    )
    # Every read-back index is one the camera really sent, and arrived after it was sent.
    assert len(window.latency_s) == len(window.decoded)
    assert all(lat > 0 for lat in window.latency_s)
    assert consumer.stats.malformed == 0


@pytest.mark.parametrize("consumer_first", [True, False], ids=["consumer-first", "producer-first"])
@pytest.mark.parametrize("ice_mode", ["none", "trickle"])
async def test_ice_cases_and_join_orders(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str, ice_mode: IceMode,
    consumer_first: bool,
) -> None:
    """Both kinds of producers whose offer has no candidates, in both join orders.

    "none" is the stock aiortc producer: it never sends candidates, so only our answer (from
    the gathered local description) can carry them. "trickle" is a browser-like producer that
    also ignores the candidates in our answer (like a peer that cannot reach our addresses),
    so the connection can only come up through the candidates it trickled to us.
    """
    room = await rest.create_video_room(workspace, f"cam-{ice_mode}")
    source = CameraSource(320, 240, fps=30)
    consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"))
    producer = CameraProducer(
        arena.base_url, workspace, room, pid("producer"), source, ice_mode=ice_mode,
        use_answer_candidates=ice_mode != "trickle",
    )
    first, second = (consumer, producer) if consumer_first else (producer, consumer)
    async with running(first):
        await eventually(lambda: first.stats.joined, "first participant joined")
        async with running(second):
            indices = await decoded_frames(consumer, 10)
            assert all(source.sent_at(i) is not None for i in indices)
            assert consumer.stats.offers == 1 and consumer.stats.peer_failures == 0
            if ice_mode == "trickle":
                assert producer.stats.candidates_sent > 0
                assert consumer.stats.remote_candidates == producer.stats.candidates_sent


async def test_malformed_signals_are_counted_and_change_nothing(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    room = await rest.create_video_room(workspace, "cam-bad")
    consumer_id = pid("consumer")
    consumer = VideoConsumer(arena.base_url, workspace, room, consumer_id)
    async with running(consumer):
        await eventually(lambda: consumer.stats.joined, "consumer joined")
        # A misbehaving producer, over a raw socket and raw REST signals.
        ws, _ = await join(arena.base_url, "video", workspace, room, "bad-producer", "producer")
        bad = [
            {"type": "offer", "sdp": "not an sdp", "target_consumer": consumer_id},
            {"type": "offer", "sdp": "", "target_consumer": consumer_id},
            {"type": "ice", "candidate": {"candidate": "candidate:bogus", "sdpMid": "0"},
             "target_consumer": consumer_id},
            {"type": "ice", "candidate": {"candidate": 5}, "target_consumer": consumer_id},
            {"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"},
             "target_consumer": consumer_id},  # neither sdpMid nor sdpMLineIndex
        ]
        for message in bad:
            await rest.signal(workspace, room, "bad-producer", message)
        await eventually(lambda: consumer.stats.malformed == len(bad), "all counted")
        await ws.close()
        assert consumer.stats.joined and consumer.stats.reconnects == 0
        assert consumer.latest() is None

        # Nothing broke: a real producer still gets through.
        source = CameraSource(320, 240, fps=30)
        producer = CameraProducer(arena.base_url, workspace, room, pid("producer"), source)
        async with running(producer):
            await decoded_frames(consumer, 5)
    assert consumer.stats.malformed == len(bad)


async def test_stop_cleans_up_every_task(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    room = await rest.create_video_room(workspace, "cam-clean")
    before = asyncio.all_tasks()
    source = CameraSource(320, 240, fps=30)
    consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"))
    producer = CameraProducer(arena.base_url, workspace, room, pid("producer"), source)
    async with running(consumer, producer):
        await decoded_frames(consumer, 3)
    assert not consumer.stats.connected and not consumer.stats.joined

    def leftovers() -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}

    # aiortc finishes its own transport tasks shortly after close(); ours are awaited.
    await eventually(lambda: not leftovers(), "no tasks left behind")
    room_info = await rest.get_video_room(workspace, room)
    assert room_info["participants"]["total"] == 0


async def test_simultaneous_joins_connect_first_time(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    """Producer and consumer joining at once: the producer's post-join listing and the
    consumer's participant_joined both want to offer; exactly one offer must win cleanly."""
    for attempt in range(3):
        room = await rest.create_video_room(workspace, f"cam-race-{attempt}")
        source = CameraSource(320, 240, fps=30)
        consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"))
        producer = CameraProducer(arena.base_url, workspace, room, pid("producer"), source)
        try:
            await asyncio.gather(consumer.start(), producer.start())
            await decoded_frames(consumer, 3)
        finally:
            await asyncio.gather(consumer.stop(), producer.stop())
        assert consumer.stats.peer_failures == 0 and consumer.stats.reconnects == 0


async def test_offer_with_audio_and_a_second_video_uses_the_first_video_only(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    """A browser-like producer may offer more than one camera: we take the first video
    section and decline the rest, so no unread frames pile up inside aiortc."""
    room = await rest.create_video_room(workspace, "cam-multi")
    consumer_id = pid("consumer")
    consumer = VideoConsumer(arena.base_url, workspace, room, consumer_id)
    async with running(consumer):
        await eventually(lambda: consumer.stats.joined, "consumer joined")
        ws, _ = await join(arena.base_url, "video", workspace, room, "multi", "producer")
        pc = RTCPeerConnection(rtc_configuration())
        try:
            main = CameraSource(320, 240, fps=30)
            pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
            pc.addTransceiver(CameraTrack(main), direction="sendonly")
            pc.addTransceiver(CameraTrack(CameraSource(160, 120, fps=30)), direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            await rest.signal(workspace, room, "multi", {
                "type": "offer", "sdp": pc.localDescription.sdp, "target_consumer": consumer_id,
            })
            answer = (await recv_type(ws, "webrtc_answer"))["answer"]["sdp"]
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            indices = await decoded_frames(consumer, 5)
            frame = consumer.latest()
        finally:
            await pc.close()
            await ws.close()
    sections = answer.split("\r\nm=")[1:]
    assert [sec.split(" ")[0] for sec in sections] == ["audio", "video", "video"]
    assert ["a=inactive" in sec for sec in sections] == [True, False, True]
    assert "a=recvonly" in sections[1]
    assert frame is not None and frame.rgb.shape == (240, 320, 3)
    assert all(main.sent_at(i) is not None for i in indices)


async def test_start_fails_clearly_without_server_or_room(
    arena: ArenaServerThread, workspace: str
) -> None:
    before = asyncio.all_tasks()
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ArenaUnavailable):
        await VideoConsumer(nobody, workspace, "cam", pid("consumer"), timeout_s=2).start()
    with pytest.raises(JoinRefused):
        await VideoConsumer(arena.base_url, workspace, "no-such-room", pid("consumer")).start()
    with pytest.raises(ValueError):
        VideoConsumer("ftp://127.0.0.1", workspace, "cam", pid("consumer"))
    with pytest.raises(ValueError):
        VideoConsumer(arena.base_url, workspace, "", pid("consumer"))
    with pytest.raises(ValueError):
        VideoConsumer(arena.base_url, workspace, "cam", pid("consumer"), timeout_s=0)
    assert asyncio.all_tasks() - before <= {asyncio.current_task()}
