"""Plan: alignment, the three blends, trimming, popping; properties with hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from orchestrator.control.plan import Plan

PROPS = settings(deadline=None, max_examples=120)
VALUES = st.floats(-150, 150, allow_nan=False, width=64)


def chunks(h: int, a: int) -> st.SearchStrategy[np.ndarray]:
    return arrays(np.float64, (h, a), elements=VALUES)


def ramp(h: int, a: int = 1, start: float = 0.0) -> np.ndarray:
    return start + np.arange(h * a, dtype=np.float64).reshape(h, a)


def stream(plan: Plan, ticks: range) -> list[np.ndarray | None]:
    return [plan.pop(k) for k in ticks]


# -- unit tests ---------------------------------------------------------------------------
def test_align_drops_the_past_and_keeps_the_rest() -> None:
    plan = Plan(action_dim=2, max_ahead=5, blend="replace")
    result = plan.merge(ramp(5, 2), k_obs=10, k_now=12)
    assert result.dropped_past == 3 and result.added == 2 and result.blended == 0
    assert [t for t, _ in plan.snapshot()] == [13, 14]
    assert plan.action_for(13) == pytest.approx([6.0, 7.0])
    assert plan.horizon(12) == 2


def test_chunk_entirely_in_the_past_changes_nothing() -> None:
    plan = Plan(1, 4)
    plan.merge(ramp(4), k_obs=0, k_now=0)
    before = plan.snapshot()
    result = plan.merge(ramp(4, start=100), k_obs=0, k_now=7)
    assert result.dropped_past == 4 and result.added == 0
    assert plan.snapshot() == [] and before  # the old ticks are past too


def test_pop_returns_the_action_and_forgets_earlier_ticks() -> None:
    plan = Plan(1, 5, blend="replace")
    plan.merge(ramp(5), k_obs=0, k_now=-1)
    assert plan.pop(2) == pytest.approx([2.0])
    assert plan.first_tick == 3 and len(plan) == 2
    assert plan.pop(2) is None  # already gone
    assert plan.action_for(4) == pytest.approx([4.0]) and len(plan) == 2  # peek only
    assert plan.pop(10) is None and len(plan) == 0 and plan.horizon(10) == 0


def test_crossfade_rises_from_one_over_l_to_one() -> None:
    plan = Plan(1, 20, blend="crossfade", crossfade_ticks=4)
    plan.merge(np.zeros((20, 1)), k_obs=0, k_now=-1)
    plan.merge(np.ones((20, 1)), k_obs=0, k_now=-1)  # on time: nothing dropped
    values = [v[0] for _, v in plan.snapshot()]
    assert values[:6] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_crossfade_is_cut_short_to_finish_before_the_old_plan_ends() -> None:
    plan = Plan(1, 20, blend="crossfade", crossfade_ticks=10)
    plan.merge(np.zeros((5, 1)), k_obs=0, k_now=-1)  # old plan: ticks 0..4
    plan.merge(np.ones((20, 1)), k_obs=2, k_now=1)  # overlaps ticks 2..4 only
    values = dict((t, v[0]) for t, v in plan.snapshot())
    # ramp of 3 anchored on tick 2: 1/3 (published already), 2/3, 1, then the chunk alone
    assert values[3] == pytest.approx(2 / 3) and values[4] == pytest.approx(1.0)
    assert values[5] == 1.0


def test_ensemble_is_acts_weighted_mean() -> None:
    m = 0.5
    plan = Plan(1, 10, blend="ensemble", ensemble_m=m)
    for value in (0.0, 3.0, 9.0):
        plan.merge(np.full((10, 1), value), k_obs=0, k_now=-1)
    w = [math.exp(-m * j) for j in range(3)]
    expected = (0.0 * w[0] + 3.0 * w[1] + 9.0 * w[2]) / sum(w)
    assert plan.action_for(0) == pytest.approx([expected])


def test_replace_wins_outright_and_keeps_uncovered_old_ticks() -> None:
    plan = Plan(1, 10, blend="replace")
    plan.merge(np.zeros((10, 1)), k_obs=0, k_now=-1)
    plan.merge(np.ones((3, 1)), k_obs=4, k_now=3)
    values = [v[0] for _, v in plan.snapshot()]
    assert values == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]  # ticks 4..9


def test_trim_keeps_at_most_max_ahead_ticks() -> None:
    plan = Plan(1, 4)
    result = plan.merge(ramp(8), k_obs=0, k_now=0)  # a chunk longer than max_ahead
    assert plan.last_tick == 4 and result.trimmed == 3


@pytest.mark.parametrize(
    "bad",
    [np.zeros((3,)), np.zeros((0, 2)), np.zeros((3, 3)), np.zeros((2, 2, 2)),
     np.array([[0.0, np.nan]]), np.array([[np.inf, 0.0]])],
)
def test_bad_chunk_shape_is_a_clear_error_and_changes_nothing(bad: np.ndarray) -> None:
    plan = Plan(2, 5)
    plan.merge(ramp(5, 2), 0, -1)
    before = plan.snapshot()
    with pytest.raises(ValueError, match=r"shape|non-finite"):
        plan.merge(bad, 1, 0)
    assert plan.snapshot() == before


@pytest.mark.parametrize(
    "kwargs",
    [{"action_dim": 0}, {"max_ahead": 0}, {"blend": "average"}, {"crossfade_ticks": 0},
     {"ensemble_m": -1.0}, {"ensemble_m": math.nan}],
)
def test_bad_configuration_is_rejected(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"action_dim": 2, "max_ahead": 5, **kwargs}
    with pytest.raises(ValueError):
        Plan(**args)  # type: ignore[arg-type]


def test_clear_and_snapshot() -> None:
    plan = Plan(2, 3)
    plan.merge(ramp(3, 2), 5, 4)
    assert plan.snapshot() == [(5, [0.0, 1.0]), (6, [2.0, 3.0]), (7, [4.0, 5.0])]
    plan.clear()
    assert plan.snapshot() == [] and plan.last_tick is None and plan.horizon(0) == 0


# -- properties ---------------------------------------------------------------------------
@PROPS
@given(chunk=chunks(8, 2), k_obs=st.integers(-5, 30), delay=st.integers(0, 12))
def test_no_action_for_a_published_tick(chunk: np.ndarray, k_obs: int, delay: int) -> None:
    plan = Plan(2, 8)
    k_now = k_obs + delay
    plan.merge(chunk, k_obs, k_now)
    ticks = [t for t, _ in plan.snapshot()]
    assert all(k_now < t <= k_now + 8 for t in ticks)
    assert plan.horizon(k_now) == (ticks[-1] - k_now if ticks else 0)


@PROPS
@given(chunk=chunks(10, 3), k_obs=st.integers(0, 20), delay=st.integers(0, 12))
def test_replace_with_one_chunk_streams_the_chunk_from_the_alignment_point(
    chunk: np.ndarray, k_obs: int, delay: int
) -> None:
    plan = Plan(3, 10, blend="replace")
    k_now = k_obs + delay
    plan.merge(chunk, k_obs, k_now)
    out = stream(plan, range(k_now + 1, k_obs + 10))
    expected = list(chunk[delay + 1 :])
    assert len(out) == len(expected)
    for got, want in zip(out, expected, strict=True):
        assert got is not None and np.array_equal(got, want)


@st.composite
def arrivals(draw: st.DrawFn, blend: str) -> tuple[list[tuple[np.ndarray, int]], list[int],
                                                   list[int]]:
    """A sequence of chunks with increasing k_obs, and two arrival schedules (k_now at
    each merge) that differ only in lateness."""
    n = draw(st.integers(1, 4))
    obs = sorted(draw(st.lists(st.integers(0, 20), min_size=n, max_size=n)))
    seq = [(draw(chunks(8, 2)), k) for k in obs]

    def schedule() -> list[int]:
        nows, floor = [], -1
        for k in obs:
            now = max(floor, k + draw(st.integers(0, 6)))
            nows.append(now)
            floor = now
        return nows

    return seq, schedule(), schedule()


@pytest.mark.parametrize("blend", ["crossfade", "ensemble", "replace"])
def test_merge_is_deterministic_and_independent_of_lateness(blend: str) -> None:
    @PROPS
    @given(data=arrivals(blend), crossfade=st.integers(1, 12))
    def check(data: tuple[list[tuple[np.ndarray, int]], list[int], list[int]],
              crossfade: int) -> None:
        seq, nows_a, nows_b = data
        plans = []
        for nows in (nows_a, nows_b, nows_a):
            plan = Plan(2, 8, blend=blend, crossfade_ticks=crossfade,  # type: ignore[arg-type]
                        ensemble_m=0.3)
            for (chunk, k_obs), k_now in zip(seq, nows, strict=True):
                plan.merge(chunk, k_obs, k_now)
            plans.append(dict(plan.snapshot()))
        assert plans[0] == plans[2]  # same inputs, same plan
        horizon = max(nows_a[-1], nows_b[-1])
        later_a = {t: v for t, v in plans[0].items() if t > horizon}
        later_b = {t: v for t, v in plans[1].items() if t > horizon}
        assert later_a.keys() == later_b.keys()
        for t in later_a:
            assert later_a[t] == pytest.approx(later_b[t], rel=1e-12, abs=1e-9)

    check()


@PROPS
@given(
    old=chunks(12, 2), new=chunks(12, 2), k_obs=st.integers(0, 8), delay=st.integers(0, 5),
    crossfade=st.integers(1, 12),
)
def test_crossfade_jump_is_bounded_by_the_blend(
    old: np.ndarray, new: np.ndarray, k_obs: int, delay: int, crossfade: int
) -> None:
    """Each published value lies between the two chunks' values for its tick, with a weight
    on the new chunk that never rises by more than the ramp's step, except on the first
    tick ahead, where it jumps by what fell into the past."""
    plan = Plan(2, 12, blend="crossfade", crossfade_ticks=crossfade)
    plan.merge(old, 0, -1)  # old chunk: ticks 0..11
    k_now = k_obs + delay
    published_before = [plan.pop(k) for k in range(k_now + 1)]
    plan.merge(new, k_obs, k_now)
    ramp_len = max(1, min(crossfade, 11 - k_obs + 1))
    prev = published_before[-1]
    prev_w = 0.0
    for tick in range(k_now + 1, k_obs + 12):
        got = plan.pop(tick)
        assert got is not None
        i = tick - k_obs
        w = min(1.0, (i + 1) / ramp_len) if tick <= 11 else 1.0
        a = old[tick] if tick <= 11 else new[i]
        b = new[i]
        assert got == pytest.approx((1 - w) * a + w * b, abs=1e-9)
        if tick == k_now + 1:
            assert w == min(1.0, (delay + 2) / ramp_len)  # a[0..delay] fell into the past
        else:
            assert 0 <= w - prev_w <= 1 / ramp_len + 1e-12
        if prev is not None and tick == k_now + 1:
            # The boundary jump: the old plan's own step plus w times the chunks' gap.
            bound = np.abs(a - prev) + w * np.abs(b - a) + 1e-9
            assert np.all(np.abs(got - prev) <= bound)
        prev, prev_w = got, w


@PROPS
@given(
    a=st.floats(-100, 100), b=st.floats(-100, 100), delay=st.integers(0, 4),
    crossfade=st.integers(1, 10),
)
def test_crossfade_between_steady_chunks_moves_at_most_gap_over_l_per_tick(
    a: float, b: float, delay: int, crossfade: int
) -> None:
    plan = Plan(1, 30, blend="crossfade", crossfade_ticks=crossfade)
    plan.merge(np.full((30, 1), a), 0, -1)
    for k in range(5 + delay + 1):
        plan.pop(k)
    plan.merge(np.full((30, 1), b), 5, 5 + delay)
    out = stream(plan, range(6 + delay, 35))
    assert all(v is not None for v in out)
    values = [a] + [float(v[0]) for v in out if v is not None]
    steps = np.abs(np.diff(values))
    gap = abs(b - a)
    assert steps[0] <= gap * min(1.0, (delay + 2) / crossfade) + 1e-9
    assert np.all(steps[1:] <= gap / crossfade + 1e-9)
    assert values[-1] == b


@PROPS
@given(seq=st.lists(st.tuples(chunks(6, 1), st.integers(0, 3)), min_size=1, max_size=5),
       m=st.floats(0, 2))
def test_ensemble_matches_a_naive_weighted_mean(
    seq: list[tuple[np.ndarray, int]], m: float
) -> None:
    plan = Plan(1, 6, blend="ensemble", ensemble_m=m)
    proposals: dict[int, list[float]] = {}
    k_obs = 0
    for chunk, step in seq:
        k_obs += step
        plan.merge(chunk, k_obs, k_obs)  # a[0] is dropped: its tick is being published
        for i in range(1, 6):
            proposals.setdefault(k_obs + i, []).append(float(chunk[i, 0]))
        for t in [t for t in proposals if t <= k_obs]:
            del proposals[t]
    for t, values in proposals.items():
        w = [math.exp(-m * j) for j in range(len(values))]
        expected = sum(wi * v for wi, v in zip(w, values, strict=True)) / sum(w)
        got = plan.action_for(t)
        assert got is not None and got[0] == pytest.approx(expected, rel=1e-9, abs=1e-9)
