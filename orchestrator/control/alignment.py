"""Observation-time alignment: which tick a chunk's first action belongs to.

A chunk is a plan that starts at the moment its observation was taken: the **capture**
time of its oldest part (a camera frame is older than its arrival by the video path's
delay; a joint reading by its transport), not the tick at which the loop snapshotted the
latest parts. ``k_obs`` is the tick nearest that moment. Executing the chunk from the
snapshot tick instead replays the past: the arm steps back at each merge by the
observation's age.

Everything here is pure: moments are monotonic seconds passed in by the caller.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


def nearest_tick(moment: float, t0: float, rate: float) -> int:
    """The tick whose due time (``t0 + k / rate``) is nearest ``moment``."""
    if not (math.isfinite(moment) and math.isfinite(t0) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"moment, t0 and rate must be finite (rate > 0): {moment}, {t0}, {rate}")
    return math.floor((moment - t0) * rate + 0.5)


def observation_tick(
    capture_moments: Iterable[float],
    snapshot_tick: int,
    t0: float,
    rate: float,
    max_offset_ticks: int,
) -> int:
    """``k_obs`` for an observation whose parts were captured at ``capture_moments``,
    snapshotted at ``snapshot_tick``: the tick nearest the oldest capture, never after the
    snapshot (a part cannot come from the future: a moment after it is clock noise) and
    never more than ``max_offset_ticks`` before it (an absurd estimate must not throw the
    whole chunk into the past). Without any moment it is the snapshot tick."""
    if max_offset_ticks < 0:
        raise ValueError(f"max_offset_ticks must be >= 0, got {max_offset_ticks}")
    moments = [m for m in capture_moments if math.isfinite(m)]
    if not moments:
        return snapshot_tick
    k = nearest_tick(min(moments), t0, rate)
    return max(snapshot_tick - max_offset_ticks, min(snapshot_tick, k))


def frame_capture_moment(
    arrived_at: float, stream_capture: float | None, configured_delay_s: float | None
) -> float:
    """When a frame was captured: the stream's own timing when it carries one (RTCP sender
    report mapping, clocks known to agree), else the arrival time minus the configured
    video-path delay (none configured: the arrival time)."""
    if stream_capture is not None and math.isfinite(stream_capture):
        return min(stream_capture, arrived_at)
    return arrived_at - (configured_delay_s or 0.0)


def joint_capture_moment(
    now: float, last_update: float | None, typical_interval_s: float | None,
    producer_connected: bool = False,
) -> float | None:
    """When the joint state was read. A room forwards a joint only when it changes, so the
    arrival of the last change dates a moving arm; an arm that has been still for longer
    than a few reading intervals is current now (its state has not changed since). So is
    one whose robot is still connected when no interval is known yet (a robot that sent
    one reading and stood still)."""
    if last_update is None:
        return None
    age = now - last_update
    if typical_interval_s is None:
        return now if producer_connected else last_update
    if age > 3.0 * typical_interval_s:
        return now
    return last_update


@dataclass(frozen=True)
class AlignmentStats:
    """Offsets between the snapshot tick and the tick a chunk was aligned to."""

    samples: int
    ticks_p50: float | None
    ticks_p99: float | None
    ms_p50: float | None  # snapshot time minus the observation's capture moment
    ms_p99: float | None
    source: str  # what dated the last observation: "stream", "configured", "arrival", ...


class AlignmentTracker:
    """Recent alignment offsets of one session, for its stats."""

    def __init__(self, window: int = 500) -> None:
        self._ticks: deque[int] = deque(maxlen=window)
        self._seconds: deque[float] = deque(maxlen=window)
        self.source = "none"

    def add(self, offset_ticks: int, offset_s: float, source: str) -> None:
        self._ticks.append(int(offset_ticks))
        if math.isfinite(offset_s):
            self._seconds.append(offset_s)
        self.source = source

    def stats(self) -> AlignmentStats:
        def pct(values: deque[float] | deque[int], q: float, scale: float) -> float | None:
            if not values:
                return None
            return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)) * scale, 3)

        return AlignmentStats(
            samples=len(self._ticks),
            ticks_p50=pct(self._ticks, 50, 1.0), ticks_p99=pct(self._ticks, 99, 1.0),
            ms_p50=pct(self._seconds, 50, 1000.0), ms_p99=pct(self._seconds, 99, 1000.0),
            source=self.source,
        )
