"""Capture times from the stream's own timing (RTCP sender reports), over real WebRTC on
loopback: the producer is on this host, so its clock is trusted and every dated frame was
captured between the moment the camera sent it and its arrival."""

from __future__ import annotations

import asyncio
import time

from orchestrator.arena.rest import ArenaRest
from orchestrator.arena.stream_clock import same_host, sender_time
from orchestrator.arena.video import VideoConsumer
from sim_robot.camera import CameraSource, decode_frame_index
from sim_robot.video_producer import CameraProducer
from tests.arena.video_helpers import decoded_frames, pid, running
from tests.support.arena import ArenaServerThread


async def test_frames_are_dated_by_the_senders_clock(
    arena: ArenaServerThread, rest: ArenaRest, workspace: str
) -> None:
    room = await rest.create_video_room(workspace, "front")
    source = CameraSource(160, 120, fps=15)
    consumer = VideoConsumer(arena.base_url, workspace, room, pid("consumer"))
    producer = CameraProducer(arena.base_url, workspace, room, pid("producer"), source)
    dated: list[tuple[float, float, float]] = []  # (sent, captured, arrived)
    async with running(consumer, producer):
        await decoded_frames(consumer, 3)
        deadline = time.monotonic() + 20.0  # aiortc sends a sender report every 0.5-1.5 s
        while len(dated) < 10 and time.monotonic() < deadline:
            frame = consumer.latest()
            if frame is not None and frame.captured_at is not None:
                index = decode_frame_index(frame.rgb)
                sent = None if index is None else source.sent_at(index)
                if sent is not None and (not dated or dated[-1][2] != frame.arrived_at):
                    dated.append((sent, frame.captured_at, frame.arrived_at))
            await asyncio.sleep(0.05)
    assert len(dated) >= 10, dated
    for sent, captured, arrived in dated:
        assert captured <= arrived
        # Dated by the report nearest a capture (frame due time + the smallest delay to the
        # wire seen): within a few ms of when the camera made the frame, never the arrival.
        assert sent - 0.02 <= captured <= sent + 0.1, (sent, captured, arrived)


def test_sender_time_maps_rtp_through_the_report() -> None:
    ntp = (2_208_988_800 + 1000) << 32  # unix 1000.0
    assert sender_time(ntp, 90_000, 0) == 999.0  # one second of 90 kHz before the report
    assert sender_time(ntp, 5, (5 - 45_000) % (1 << 32)) == 999.5  # across the wrap
    assert sender_time(ntp, 0, 9_000) == 1000.1  # a frame newer than the report


def test_same_host_needs_every_offered_address_to_be_ours() -> None:
    assert same_host(["127.0.0.1"], [])
    assert same_host(["10.0.0.5", "::1"], ["10.0.0.5", "172.17.0.2"])
    assert not same_host(["10.0.0.6"], ["10.0.0.5"])
    assert not same_host(["10.0.0.5", "192.168.1.9"], ["10.0.0.5"])
    assert not same_host([], ["10.0.0.5"])


def test_server_stamps_count_only_from_this_host_and_when_sane() -> None:
    from datetime import UTC, datetime, timedelta

    from orchestrator.arena.stream_clock import url_on_this_host, wall_to_monotonic

    assert url_on_this_host("http://127.0.0.1:8000") and url_on_this_host("http://localhost")
    assert url_on_this_host("http://[::1]:9") and not url_on_this_host("http://10.1.2.3:8000")
    now = datetime.now(tz=UTC)
    before = time.monotonic()
    stamp = wall_to_monotonic((now - timedelta(milliseconds=40)).isoformat())
    assert stamp is not None and before - 0.1 < stamp < time.monotonic() - 0.03
    assert wall_to_monotonic((now + timedelta(seconds=3)).isoformat()) is None  # future
    assert wall_to_monotonic((now - timedelta(seconds=30)).isoformat()) is None  # too old
    assert wall_to_monotonic("yesterday") is None and wall_to_monotonic(None) is None
