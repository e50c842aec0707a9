"""The loop's side of observation-time alignment: when the joint state was read, and which
tick an observation's chunk belongs to (``orchestrator.control.alignment`` is the rule)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from orchestrator.control.alignment import joint_capture_moment, observation_tick
from orchestrator.control.timing import TickClock
from orchestrator.sessions.observation import Observation


class JointReadings:
    """Arrival times of joint readings: the last one and the typical interval between them
    (a still arm sends nothing, so a long silence means "current", not "old")."""

    def __init__(self, window: int = 32) -> None:
        self._intervals: deque[float] = deque(maxlen=window)
        self.last: float | None = None

    def note(self, at: float) -> None:
        if self.last is not None and at > self.last:
            self._intervals.append(at - self.last)
        self.last = at

    def reset(self) -> None:
        self._intervals.clear()
        self.last = None

    def captured_at(self, now: float, last_update: float | None,
                    producer_connected: bool = False) -> float | None:
        typical = float(np.median(self._intervals)) if self._intervals else None
        return joint_capture_moment(now, last_update, typical, producer_connected)


@dataclass(frozen=True)
class Alignment:
    tick: int  # the tick the chunk's first action belongs to
    age_s: float  # snapshot time minus the observation's capture
    source: str  # what dated it (Observation.dated_by), or "snapshot" when not aligned


def align(observation: Observation, clock: TickClock | None, stale_after_s: float,
          enabled: bool = True) -> Alignment:
    """The tick nearest the observation's capture, at most ``stale_after_s`` before its
    snapshot (an older observation is never asked about)."""
    age = max(0.0, observation.taken_at - observation.captured_at)
    if not enabled or clock is None:
        return Alignment(observation.tick, age, "snapshot")
    bound = math.ceil(stale_after_s * clock.rate)
    tick = observation_tick([observation.captured_at], observation.tick, clock.t0, clock.rate,
                            bound)
    return Alignment(tick, age, observation.dated_by)
