"""The loop's alignment helpers: the joint state current at the frames' capture."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrator.sessions.capture import JointReadings, observation_state


@dataclass(frozen=True)
class _Frame:
    arrived_at: float
    captured_at: float | None = None


@dataclass(frozen=True)
class _Settings:
    align_to_capture: bool = True
    camera_latency_s: float | None = None


def readings() -> JointReadings:
    r = JointReadings()
    for i in range(10):
        r.note(1.0 + 0.1 * i, np.array([float(i)]))
    return r


def test_the_state_is_the_reading_current_at_the_frames_capture() -> None:
    r = readings()
    state, at = observation_state(r, np.array([9.0]), {"front": _Frame(2.0, 1.45)}, 2.0, 1.9,
                                  True, _Settings())
    assert state is not None and state[0] == 4.0 and at == 1.4  # the reading current at 1.45
    # Without stream timing, the configured delay dates the frame.
    state, at = observation_state(r, np.array([9.0]), {"front": _Frame(2.0)}, 2.0, 1.9, True,
                                  _Settings(camera_latency_s=0.35))
    assert state is not None and state[0] == 6.0 and at == 1.6


def test_a_still_arm_is_current_at_the_frames_capture() -> None:
    r = readings()  # readings every 0.1 s up to 1.9, then silence: the arm stopped
    state, at = observation_state(r, np.array([9.0]), {"front": _Frame(3.0, 2.8)}, 3.0, 1.9,
                                  True, _Settings())
    assert state is not None and state[0] == 9.0 and at == 2.8
    # A long gap between two readings: still in between.
    r.note(5.0, np.array([10.0]))
    state, at = observation_state(r, np.array([10.0]), {"front": _Frame(5.1, 4.0)}, 5.1, 5.0,
                                  True, _Settings())
    assert state is not None and state[0] == 9.0 and at == 4.0


def test_older_than_the_history_falls_back_to_its_oldest_reading() -> None:
    state, at = observation_state(readings(), np.array([9.0]), {"front": _Frame(2.0, 0.5)},
                                  2.0, 1.9, True, _Settings())
    assert state is not None and state[0] == 0.0 and at == 1.0


def test_without_alignment_or_frames_the_newest_state_is_used() -> None:
    r = readings()
    current = np.array([9.0])
    state, at = observation_state(r, current, {"front": _Frame(2.0, 1.45)}, 1.95, 1.9, True,
                                  _Settings(align_to_capture=False))
    assert state is current and at == 1.9
    state, at = observation_state(r, current, {}, 1.95, 1.9, True, _Settings())
    assert state is current and at == 1.9
    assert observation_state(JointReadings(), None, {}, 1.0, None, False, _Settings()) == (
        None, None)
