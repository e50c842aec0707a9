"""Observation watchdog."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.control.freshness import age_since, observation_freshness
from orchestrator.control.reasons import Reason


def test_fresh_when_every_source_is_recent() -> None:
    f = observation_freshness({"front": 0.05, "wrist": 0.2}, joints_age=0.01, max_age=0.5)
    assert f.fresh and f.reason is Reason.OK and f.age == 0.2


def test_waiting_for_frames_comes_before_waiting_for_joints() -> None:
    f = observation_freshness({"front": None, "wrist": 0.1}, joints_age=None, max_age=0.5)
    assert not f.fresh and f.reason is Reason.WAITING_FOR_FRAMES
    assert f.waiting == ("front", "joints")
    f = observation_freshness({"front": 0.1}, joints_age=None, max_age=0.5)
    assert f.reason is Reason.WAITING_FOR_JOINTS and f.waiting == ("joints",)


def test_a_source_that_went_quiet_is_stale() -> None:
    f = observation_freshness({"front": 0.7}, joints_age=0.1, max_age=0.5)
    assert not f.fresh and f.reason is Reason.STALE_OBSERVATION
    assert f.stale_sources == ("front",)
    f = observation_freshness({"front": 0.1}, joints_age=math.nan, max_age=0.5)
    assert f.reason is Reason.STALE_OBSERVATION and f.stale_sources == ("joints",)


def test_joints_may_age_by_their_own_limit() -> None:
    """An arm holding still sends no joint_update; with an infinite joint limit its last
    reading stays usable while the cameras keep the watchdog honest."""
    assert observation_freshness({"front": 0.1}, 60.0, 0.5, joints_max_age=math.inf).fresh
    f = observation_freshness({"front": 0.1}, 2.0, 0.5, joints_max_age=1.0)
    assert f.reason is Reason.STALE_OBSERVATION and f.stale_sources == ("joints",)
    f = observation_freshness({"front": 0.1}, None, 0.5, joints_max_age=math.inf)
    assert f.reason is Reason.WAITING_FOR_JOINTS


def test_exactly_max_age_is_still_fresh() -> None:
    assert observation_freshness({"front": 0.5}, 0.5, 0.5).fresh


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError):
        observation_freshness({"front": 0.1}, 0.1, 0.0)
    with pytest.raises(ValueError):
        observation_freshness({"joints": 0.1}, 0.1, 1.0)
    with pytest.raises(ValueError):
        observation_freshness({"front": 0.1}, 0.1, 1.0, joints_max_age=0.0)


def test_age_since() -> None:
    assert age_since(10.0, None) is None
    assert age_since(10.0, 9.5) == 0.5
    assert age_since(10.0, 11.0) == 0.0


@settings(deadline=None, max_examples=150)
@given(
    frames=st.dictionaries(st.sampled_from(["a", "b", "c"]),
                           st.none() | st.floats(0, 2, allow_nan=False)),
    joints=st.none() | st.floats(0, 2),
    max_age=st.floats(0.01, 1.5),
)
def test_fresh_exactly_when_every_source_delivered_within_max_age(
    frames: dict[str, float | None], joints: float | None, max_age: float
) -> None:
    f = observation_freshness(frames, joints, max_age)
    ages = [*frames.values(), joints]
    assert f.fresh == all(a is not None and a <= max_age for a in ages)
    assert f.fresh == (f.reason is Reason.OK)


_AGE = st.none() | st.floats(0, 2) | st.just(math.inf) | st.just(math.nan)


@settings(deadline=None, max_examples=300)
@given(frames=st.dictionaries(st.sampled_from(["a", "b", "c"]), _AGE), joints=_AGE,
       max_age=st.floats(0.01, 1.5), joints_max_age=st.none() | st.just(math.inf)
       | st.floats(0.01, 1.5))
def test_the_report_names_every_waiting_and_stale_source_and_the_oldest_age(
    frames: dict[str, float | None], joints: float | None, max_age: float,
    joints_max_age: float | None,
) -> None:
    """The common case has a short path; every case must give the full report's answer."""
    f = observation_freshness(frames, joints, max_age, joints_max_age)
    limits = {**dict.fromkeys(frames, max_age),
              "joints": max_age if joints_max_age is None else joints_max_age}
    ages = {**frames, "joints": joints}
    assert set(f.waiting) == {n for n, a in ages.items() if a is None}
    stale = {n for n, a in ages.items() if a is not None and not a <= limits[n]}
    assert set(f.stale_sources) == (stale if not f.fresh else set())
    assert f.fresh == (not stale and all(a is not None for a in ages.values()))
    known = [math.inf if math.isnan(a) else a for a in ages.values() if a is not None]
    if not known:
        assert f.age is None
    elif any(a is not None and math.isnan(a) for a in ages.values()):
        assert f.age is not None and (math.isnan(f.age) or f.age == max(known))
    else:
        assert f.age == max(known)
