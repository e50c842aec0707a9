"""Synthetic camera for the simulated robot: one frame timeline, one aiortc track per peer.

Frame k of a camera is due at t0 + k / fps on the monotonic clock. Every peer connection gets
its own CameraTrack (aiortc senders pull frames, so one track cannot feed two senders), but all
tracks of a camera read the same timeline: the index in the pixels identifies one moment, and
the camera records when that frame was first handed to an encoder. A slow sender skips to the
current frame instead of falling behind.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from collections.abc import Callable, Sequence

import av
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from sim_robot.pattern import INDEX_MODULO, PatternGenerator, decode_frame_index

__all__ = ["CameraSource", "CameraTrack", "decode_frame_index"]

_CLOCK_RATE = 90_000
_TIME_BASE = fractions.Fraction(1, _CLOCK_RATE)


class CameraSource:
    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0,
                 history: int = 20_000,
                 values: Callable[[], Sequence[float]] | None = None, value_count: int = 0,
                 ) -> None:
        if not (0 < fps <= 120):
            raise ValueError(f"fps must be in (0, 120], got {fps}")
        self.width, self.height, self.fps = width, height, fps
        # What the picture shows besides its index (the arm's joints), read at capture: when
        # a frame is first made for an encoder.
        self._values = values
        self._generator = PatternGenerator(width, height, value_count if values else 0)
        self._t0 = time.monotonic()
        self._history = history
        self._sent_at: dict[int, float] = {}
        self._cached: tuple[int, np.ndarray] | None = None
        self.paused = False  # tracks hold back frames while set (a frozen camera, for tests)

    def next_index(self, last: int | None) -> tuple[int, float]:
        """The frame a track should send after `last`, and when it is due (monotonic)."""
        current = math.floor((time.monotonic() - self._t0) * self.fps)
        index = current if last is None else max(last + 1, current)
        return index, self._t0 + index / self.fps

    def planes(self, index: int) -> np.ndarray:
        """yuv420p planes of frame `index`; the first call for an index records its send time."""
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1]
        planes = self._generator.planes(index, self._values() if self._values else ())
        self._cached = (index, planes)
        key = index % INDEX_MODULO
        if key not in self._sent_at:
            self._sent_at[key] = time.monotonic()
            if len(self._sent_at) > self._history:
                del self._sent_at[next(iter(self._sent_at))]
        return planes

    def sent_at(self, index: int) -> float | None:
        """Monotonic time frame `index` (as decoded from the pixels) was first sent."""
        return self._sent_at.get(index % INDEX_MODULO)

    @property
    def frames_sent(self) -> int:
        return len(self._sent_at)


class CameraTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, source: CameraSource) -> None:
        super().__init__()
        self._source = source
        self._last: int | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        while True:
            index, due = self._source.next_index(self._last)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.readyState != "live":
                raise MediaStreamError
            if not self._source.paused:
                break
            self._last = index
        self._last = index
        frame = av.VideoFrame.from_ndarray(self._source.planes(index), format="yuv420p")
        frame.pts = round(index * _CLOCK_RATE / self._source.fps)
        frame.time_base = _TIME_BASE
        return frame
