"""Helpers for the video tests: run clients, sample frames, read frame indices back."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from orchestrator.arena.video import VideoConsumer
from sim_robot.camera import CameraSource, decode_frame_index


class _Client(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@contextlib.asynccontextmanager
async def running(*clients: _Client) -> AsyncIterator[None]:
    started: list[_Client] = []
    try:
        for client in clients:
            await client.start()
            started.append(client)
        yield
    finally:
        for client in reversed(started):
            await client.stop()


def pid(role: str) -> str:
    return f"{role}-{uuid.uuid4().hex[:8]}"


@dataclass
class Sample:
    frames: int = 0  # frames the consumer received in the window
    seconds: float = 0.0
    seen: int = 0  # distinct frames we looked at
    decoded: list[int] = field(default_factory=list)  # their indices, in arrival order
    latency_s: list[float] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


async def sample(consumer: VideoConsumer, source: CameraSource | None, seconds: float) -> Sample:
    """Watch the consumer for `seconds`: count frames, decode the index of each new one."""
    out = Sample()
    first_frames, t0 = consumer.stats.frames, time.monotonic()
    last_seq = -1
    while (now := time.monotonic()) - t0 < seconds:
        frame = consumer.latest()
        if frame is not None and frame.seq != last_seq:
            last_seq = frame.seq
            out.seen += 1
            index = decode_frame_index(frame.rgb)
            if index is not None:
                out.decoded.append(index)
                sent = None if source is None else source.sent_at(index)
                if sent is not None:
                    out.latency_s.append(frame.arrived_at - sent)
        await asyncio.sleep(0.004)
    out.frames = consumer.stats.frames - first_frames
    out.seconds = now - t0
    return out


async def decoded_frames(consumer: VideoConsumer, count: int, timeout: float = 20.0) -> list[int]:
    """Wait for `count` frames newer than the current one whose index reads back."""
    got: list[int] = []
    current = consumer.latest()
    last_seq = -1 if current is None else current.seq
    deadline = time.monotonic() + timeout
    while len(got) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"only {len(got)}/{count} decodable frames within {timeout}s; {consumer.stats}"
            )
        frame = consumer.latest()
        if frame is not None and frame.seq != last_seq:
            last_seq = frame.seq
            index = decode_frame_index(frame.rgb)
            if index is not None:
                got.append(index)
        await asyncio.sleep(0.005)
    return got
