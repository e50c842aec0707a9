"""TickClock, jitter, LatencyTracker and RefillPolicy."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from orchestrator.control.timing import (
    LatencyTracker,
    RefillPolicy,
    TickClock,
    latency_ticks,
    period_jitter,
)

PROPS = settings(deadline=None, max_examples=150)


def test_deadlines_come_from_the_tick_number() -> None:
    clock = TickClock(t0=100.0, rate=30.0)
    assert clock.deadline(0) == 100.0
    assert clock.deadline(30) == pytest.approx(101.0)
    assert clock.next_deadline(29) == clock.deadline(30)
    assert clock.due_tick(99.9) == -1
    assert clock.due_tick(100.0) == 0
    assert clock.due_tick(clock.deadline(7)) == 7  # exactly on the deadline: due


def test_a_late_tick_does_not_shift_the_next_deadlines() -> None:
    clock = TickClock(0.0, 10.0)
    late = clock.deadline(3) + 0.07  # tick 3 ran 70 ms late
    assert clock.next_tick(3, late) == 4
    assert clock.next_deadline(3) == pytest.approx(0.4)  # still due at its own time
    assert clock.lateness(3, late) == pytest.approx(0.07)


def test_a_loop_waking_several_periods_late_skips_instead_of_bursting() -> None:
    clock = TickClock(0.0, 10.0)
    assert clock.next_tick(3, 0.75) == 7


@PROPS
@given(t0=st.floats(-1e6, 1e6), rate=st.floats(1, 1000), lags=st.lists(
    st.floats(0, 3), min_size=1, max_size=50))
def test_lateness_never_accumulates(t0: float, rate: float, lags: list[float]) -> None:
    """A loop that runs each tick some periods late keeps every deadline at t0 + k/rate and
    never runs a tick twice nor before its deadline."""
    clock = TickClock(t0, rate)
    k = -1
    for lag in lags:
        k = clock.next_tick(k, clock.deadline(k + 1) + lag / rate)
        assert clock.deadline(k) == t0 + k / rate
    ticks: list[int] = []
    k = -1
    now = t0
    for lag in lags:
        now = max(now, clock.next_deadline(k)) + lag / rate
        k = clock.next_tick(k, now)
        ticks.append(k)
        assert clock.deadline(k) <= now + 1e-6
    assert ticks == sorted(set(ticks))


@pytest.mark.parametrize("rate", [0.0, -1.0, math.inf, math.nan])
def test_bad_rate_is_rejected(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TickClock(0.0, rate)


def test_jitter_is_the_deviation_from_the_period() -> None:
    stats = period_jitter([0.1, 0.1, 0.12, 0.09, math.nan], rate=10.0)
    assert stats.samples == 4
    assert stats.p50 == pytest.approx(0.005)
    assert stats.p99 == pytest.approx(0.0197, abs=1e-4)
    assert period_jitter([], 10.0).samples == 0


def test_latency_ticks_rounds_up_but_not_by_floating_point_noise() -> None:
    assert latency_ticks(0.1, 30.0) == 3  # 0.1 * 30 = 3.0000000000000004
    assert latency_ticks(0.101, 30.0) == 4
    assert latency_ticks(0.0, 30.0) == 0


def test_latency_tracker_uses_the_prior_until_enough_samples() -> None:
    tracker = LatencyTracker(prior_s=0.2, window=10, min_samples=3)
    tracker.add(0.01)
    tracker.add(0.01)
    stats = tracker.stats()
    assert not stats.measured and stats.p95 == 0.2 and stats.samples == 2
    tracker.add(0.01)
    assert tracker.stats().measured and tracker.p95 == pytest.approx(0.01)


def test_a_slower_first_latency_overrides_the_prior() -> None:
    tracker = LatencyTracker(prior_s=0.1, window=10, min_samples=5)
    tracker.add(0.6)  # the default ACT on a CPU
    stats = tracker.stats()
    assert not stats.measured and stats.p95 == pytest.approx(0.6)
    tracker.add(0.05)
    assert tracker.p95 == pytest.approx(0.6)  # still the slowest seen, never below the prior


def test_latency_tracker_keeps_a_recent_window() -> None:
    tracker = LatencyTracker(prior_s=0.1, window=5, min_samples=1)
    for _ in range(5):
        tracker.add(1.0)
    for _ in range(5):
        tracker.add(0.02)
    stats = tracker.stats()
    assert stats.p99 == pytest.approx(0.02) and stats.samples == 5


def test_latency_percentiles_are_ordered() -> None:
    tracker = LatencyTracker(min_samples=1)
    for i in range(100):
        tracker.add(i / 1000)
    s = tracker.stats()
    assert s.p50 < s.p95 < s.p99 and s.p95 == pytest.approx(0.09405)


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_bad_latency_sample_is_rejected_and_changes_nothing(bad: float) -> None:
    tracker = LatencyTracker(min_samples=1)
    tracker.add(0.05)
    with pytest.raises(ValueError):
        tracker.add(bad)
    assert tracker.stats().samples == 1


def _ask(policy: RefillPolicy, **overrides: object) -> bool:
    args: dict[str, object] = {
        "k_now": 100, "horizon": 50, "in_flight": False, "latency_p95": 0.1, "rate": 30.0,
        "last_request_tick": 90, "observation_fresh": True, **overrides,
    }
    return policy.should_request(**args)  # type: ignore[arg-type]


def test_refill_asks_when_the_horizon_reaches_latency_plus_margin() -> None:
    policy = RefillPolicy(margin_ticks=2)
    assert policy.threshold(0.1, 30.0) == 5
    assert _ask(policy, horizon=5)
    assert not _ask(policy, horizon=6)
    assert _ask(policy, horizon=0, last_request_tick=None)  # empty plan at start


def test_refill_never_asks_twice_or_from_a_stale_observation() -> None:
    policy = RefillPolicy(margin_ticks=2, replan_every=1)
    assert not _ask(policy, horizon=0, in_flight=True)
    assert not _ask(policy, horizon=0, observation_fresh=False)


def test_refill_replans_every_k_ticks() -> None:
    policy = RefillPolicy(margin_ticks=0, replan_every=10)
    assert not _ask(policy, k_now=99, last_request_tick=90)
    assert _ask(policy, k_now=100, last_request_tick=90)
    assert _ask(policy, k_now=100, last_request_tick=None)
    assert not _ask(RefillPolicy(0, None), k_now=1000, last_request_tick=0)


@pytest.mark.parametrize("kwargs", [{"margin_ticks": -1}, {"replan_every": 0}])
def test_bad_refill_configuration_is_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RefillPolicy(**kwargs)


@PROPS
@given(
    horizon=st.integers(0, 200), in_flight=st.booleans(), p95=st.floats(0, 2),
    rate=st.floats(1, 200), fresh=st.booleans(), margin=st.integers(0, 10),
    every=st.none() | st.integers(1, 50), k_now=st.integers(0, 10_000),
    since=st.none() | st.integers(0, 100),
)
def test_refill_decision_matches_the_rule(
    horizon: int, in_flight: bool, p95: float, rate: float, fresh: bool, margin: int,
    every: int | None, k_now: int, since: int | None,
) -> None:
    policy = RefillPolicy(margin, every)
    assume(abs(p95 * rate - round(p95 * rate)) > 1e-6)  # rounding at a whole tick: unit-tested
    last = None if since is None else k_now - since
    asked = policy.should_request(k_now, horizon, in_flight, p95, rate, last, fresh)
    if in_flight or not fresh:
        assert not asked
    elif horizon <= math.ceil(p95 * rate) + margin:
        assert asked
    elif every is None:
        assert not asked
    else:
        assert asked == (since is None or since >= every)
