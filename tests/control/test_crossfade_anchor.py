"""Crossfade anchored on the merge (``crossfade_anchor="merge"``): the fade starts at 1/L on
the first overlapping tick still ahead, however late the chunk arrived, so consecutive
published values never move by more than the chunks' gap over L (plus their own steps)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.control.plan import Plan


@settings(deadline=None, max_examples=150)
@given(a=st.floats(-100, 100), b=st.floats(-100, 100), delay=st.integers(0, 25),
       crossfade=st.integers(1, 10), slope=st.floats(-2, 2))
def test_every_step_is_within_gap_over_l(a: float, b: float, delay: int, crossfade: int,
                                          slope: float) -> None:
    plan = Plan(1, 60, blend="crossfade", crossfade_ticks=crossfade, crossfade_anchor="merge")
    ramp = slope * np.arange(60, dtype=np.float64)[:, None]
    plan.merge(a + ramp, 0, -1)
    published = [float(v[0]) for v in (plan.pop(k) for k in range(5 + delay + 1))
                 if v is not None]
    plan.merge(b + ramp[5:], 5, 5 + delay)  # the same motion, offset by b - a
    out = [plan.pop(k) for k in range(6 + delay, 60)]
    values = published[-1:] + [float(v[0]) for v in out if v is not None]
    steps = np.abs(np.diff(values) - slope)
    remaining = 59 - (6 + delay) + 1
    length = max(1, min(crossfade, remaining))
    assert np.all(steps <= abs(b - a) / length + 1e-9)
    assert values[-1] == pytest.approx(b + 59 * slope)


def test_the_observation_anchor_jumps_by_what_fell_into_the_past() -> None:
    merge = Plan(1, 30, blend="crossfade", crossfade_ticks=4, crossfade_anchor="merge")
    observation = Plan(1, 30, blend="crossfade", crossfade_ticks=4)
    for plan in (merge, observation):
        plan.merge(np.zeros((30, 1)), 0, -1)
        plan.merge(np.ones((30, 1)), 2, 5)  # three ticks of the fade are already past
    assert [merge.action_for(k)[0] for k in (6, 7, 8, 9, 10)] == pytest.approx(
        [0.25, 0.5, 0.75, 1.0, 1.0])
    assert observation.action_for(6)[0] == 1.0  # (6 - 2 + 1) / 4 >= 1: all at once


def test_an_unknown_anchor_is_refused() -> None:
    with pytest.raises(ValueError):
        Plan(1, 4, crossfade_anchor="sideways")  # type: ignore[arg-type]
