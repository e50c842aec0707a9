"""The loop's side of observation-time alignment: when the joint state was read, and which
tick an observation's chunk belongs to (``orchestrator.control.alignment`` is the rule).

An observation is taken at its frames' capture: the joint state in it is the reading that
was current at that moment (kept in a short history), not the newest one. Every part then
shows (nearly) the same instant, as in the synchronized frames and states a policy is
trained on, and the chunk aligned to the oldest part (that reading: at most one reading
interval before the frame) continues the past whether the policy reads the joints or the
pictures.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from orchestrator.control.alignment import joint_capture_moment, observation_tick
from orchestrator.control.timing import TickClock
from orchestrator.sessions.observation import Observation, frames_captured_at


class JointReadings:
    """Arrival times of joint readings: the last one and the typical interval between them
    (a still arm sends nothing, so a long silence means "current", not "old")."""

    def __init__(self, window: int = 32, history: int = 256) -> None:
        self._intervals: deque[float] = deque(maxlen=window)
        self._states: deque[tuple[float, np.ndarray]] = deque(maxlen=history)
        self.last: float | None = None

    def note(self, at: float, state: np.ndarray | None = None) -> None:
        if self.last is not None and at > self.last:
            self._intervals.append(at - self.last)
        self.last = at
        if state is not None:
            self._states.append((at, state))

    def reset(self) -> None:
        self._intervals.clear()
        self._states.clear()
        self.last = None

    def state_at(self, moment: float, now: float, producer_connected: bool = False
                 ) -> tuple[np.ndarray, float] | None:
        """The reading current at ``moment`` (the last at or before it; before the history
        starts, its oldest) and the moment it stands for: its own time, or ``moment`` when
        the arm was still then (the room forwards changes only: no reading for a few
        intervals, up to the next one or, without one, up to now while the robot is still
        connected). None without any reading."""
        if not self._states:
            return None
        later: float | None = None
        for at, state in reversed(self._states):
            if at <= moment:
                until = later if later is not None else now
                still = joint_capture_moment(until, at, self.typical_interval(),
                                             later is None and producer_connected) == until
                return state, (moment if still and until > at else at)
            later = at
        at, state = self._states[0]
        return state, at

    def typical_interval(self) -> float | None:
        return float(np.median(self._intervals)) if self._intervals else None

    def captured_at(self, now: float, last_update: float | None,
                    producer_connected: bool = False) -> float | None:
        return joint_capture_moment(now, last_update, self.typical_interval(),
                                    producer_connected)


@dataclass(frozen=True)
class Alignment:
    tick: int  # the tick the chunk's first action belongs to
    age_s: float  # snapshot time minus the observation's capture
    source: str  # what dated it (Observation.dated_by), or "snapshot" when not aligned


def align(observation: Observation, clock: TickClock | None, stale_after_s: float,
          enabled: bool = True) -> Alignment:
    """The tick nearest the observation's capture, at most ``stale_after_s`` before its
    snapshot (an older observation is never asked about: ``refusal``)."""
    age = max(0.0, observation.taken_at - observation.captured_at)
    if not enabled or clock is None:
        return Alignment(observation.tick, age, "snapshot")
    bound = math.ceil(stale_after_s * clock.rate)
    tick = observation_tick([observation.captured_at], observation.tick, clock.t0, clock.rate,
                            bound)
    return Alignment(tick, age, observation.dated_by)


def refusal(frames: Mapping[str, Any], observation: Observation | None, now: float,
            stale_after_s: float) -> tuple[str, str] | None:
    """Why no chunk may be asked now, as (error kind, message); None when it may.

    - ``stale_frame``: a camera's newest usable frame arrived more than ``stale_after_s``
      ago (the watchdog sees the newest arrival, which a frame the decoder could not
      convert leaves ahead of the last good one);
    - ``stale_observation``: the observation's moment (its oldest part's capture) is more
      than ``stale_after_s`` before its snapshot: a frame that arrived just now may show a
      moment long gone (a slow video path, as its stream's timing says).
    """
    old = sorted(c for c, f in frames.items()
                 if f is not None and now - f.arrived_at > stale_after_s)
    if old:
        return "stale_frame", f"the newest usable frame of {old} is older than {stale_after_s} s"
    age = 0.0 if observation is None else observation.taken_at - observation.captured_at
    if observation is None or age <= stale_after_s:
        return None
    return "stale_observation", (
        f"the observation was captured {age:.2f} s before its snapshot (dated by "
        f"{observation.dated_by}), over the {stale_after_s} s staleness limit")


class _AlignSettings(Protocol):
    @property
    def align_to_capture(self) -> bool: ...
    @property
    def camera_latency_s(self) -> float | None: ...


def observation_state(
    readings: JointReadings, current: np.ndarray | None, frames: Mapping[str, Any], now: float,
    last_update: float | None, producer_connected: bool, settings: _AlignSettings,
) -> tuple[np.ndarray | None, float | None]:
    """The joint state to observe with these frames, and its capture moment: the reading
    current at the frames' capture when aligning (and the robot has reported), else the
    newest state dated by the arrival of its last change."""
    newest = readings.captured_at(now, last_update, producer_connected)
    if current is None or not settings.align_to_capture:
        return current, newest
    moment = frames_captured_at(frames, settings.camera_latency_s)
    found = None if moment is None else readings.state_at(moment, now, producer_connected)
    if found is None:
        return current, newest
    return found
