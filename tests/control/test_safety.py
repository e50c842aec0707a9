"""SafetyLayer: limits, max step, non-finite values, emergency-stop latch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from orchestrator.control.reasons import Reason
from orchestrator.control.safety import DEFAULT_MAX_STEP, SafetyLayer

PROPS = settings(deadline=None, max_examples=150)
JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=64)


def test_defaults_are_the_normalized_convention() -> None:
    safety = SafetyLayer(JOINTS)
    assert safety.lo.tolist() == [-100.0] * 5 + [0.0]
    assert safety.hi.tolist() == [100.0] * 6
    assert safety.max_step is not None and np.all(safety.max_step == DEFAULT_MAX_STEP)


def test_limits_clamp_and_count_per_joint() -> None:
    safety = SafetyLayer(JOINTS, max_step=None)
    cmd = safety.filter(np.array([150.0, 0, 0, 0, -120.0, -5.0]))
    assert cmd.reason is Reason.OK and cmd.values is not None
    assert cmd.values.tolist() == [100.0, 0, 0, 0, -100.0, 0.0]
    assert [(e.joint, e.kind, e.value, e.published) for e in cmd.interventions] == [
        ("shoulder_pan", "limit", 150.0, 100.0),
        ("wrist_roll", "limit", -120.0, -100.0),
        ("gripper", "limit", -5.0, 0.0),
    ]
    assert safety.counts.clamped_limit == {"shoulder_pan": 1, "wrist_roll": 1, "gripper": 1}


def test_max_step_limits_the_change_per_tick() -> None:
    safety = SafetyLayer(["a", "b"], max_step={"a": 5.0})
    first = safety.filter(np.array([0.0, 0.0]))
    assert first.values is not None and first.values.tolist() == [0.0, 0.0]
    cmd = safety.filter(np.array([50.0, 50.0]))
    assert cmd.values is not None and cmd.values.tolist() == [5.0, 50.0]  # b has no step limit
    assert [(e.joint, e.kind) for e in cmd.interventions] == [("a", "step")]
    assert safety.counts.clamped_step == {"a": 1}


def test_first_command_after_rearm_without_reference_is_only_limited() -> None:
    safety = SafetyLayer(["a"], max_step=1.0)
    safety.filter(np.array([0.0]))
    safety.latch_stop()
    safety.rearm()
    cmd = safety.filter(np.array([80.0]))
    assert cmd.values is not None and cmd.values.tolist() == [80.0]


def test_rearm_with_the_robots_position_step_limits_the_first_command() -> None:
    safety = SafetyLayer(["a"], max_step=1.0)
    safety.rearm(np.array([150.0]))  # out of limits: the reference is clamped into them
    cmd = safety.filter(np.array([0.0]))
    assert cmd.values is not None and cmd.values.tolist() == [99.0]


def test_non_finite_is_never_published_and_holds_the_last_command() -> None:
    safety = SafetyLayer(["a", "b"])
    safety.filter(np.array([1.0, 2.0]))
    cmd = safety.filter(np.array([math.nan, 3.0]))
    assert cmd.values is None and cmd.reason is Reason.NON_FINITE
    assert [(e.joint, e.kind) for e in cmd.interventions] == [("a", "non_finite")]
    assert safety.counts.non_finite == 1
    last = safety.last_command
    assert last is not None and last.tolist() == [1.0, 2.0]
    after = safety.filter(np.array([math.inf, -math.inf]))
    assert after.values is None and len(after.interventions) == 2


def test_latch_publishes_nothing_until_rearmed() -> None:
    safety = SafetyLayer(["a"])
    safety.latch_stop()
    for _ in range(3):
        cmd = safety.filter(np.array([1.0]))
        assert cmd.values is None and cmd.reason is Reason.EMERGENCY_STOP
    assert safety.counts.held_latched == 3 and safety.latched
    safety.rearm()
    assert not safety.latched and safety.filter(np.array([1.0])).values is not None


def test_no_action_holds_without_counting_an_intervention() -> None:
    safety = SafetyLayer(["a"])
    cmd = safety.filter(None)
    assert cmd.values is None and cmd.reason is Reason.NO_ACTION
    assert safety.counts.as_dict() == {
        "clamped_limit": {}, "clamped_step": {}, "non_finite": 0, "held_latched": 0
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"joint_names": []},
        {"joint_names": ["a", "a"]},
        {"limits": {"nope": (0.0, 1.0)}},
        {"limits": {"a": (1.0, 0.0)}},
        {"limits": {"a": (0.0, math.inf)}},
        {"max_step": 0.0},
        {"max_step": {"nope": 1.0}},
        {"max_step": math.nan},
    ],
)
def test_bad_configuration_is_rejected(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"joint_names": ["a", "b"], **kwargs}
    with pytest.raises(ValueError):
        SafetyLayer(**args)  # type: ignore[arg-type]


def test_wrong_action_shape_is_an_error_and_changes_nothing() -> None:
    safety = SafetyLayer(["a", "b"])
    safety.filter(np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="2 values"):
        safety.filter(np.array([1.0, 1.0, 1.0]))
    last = safety.last_command
    assert last is not None and last.tolist() == [1.0, 1.0]


@st.composite
def configured(draw: st.DrawFn) -> tuple[SafetyLayer, list[np.ndarray | None]]:
    n = draw(st.integers(1, 4))
    names = [f"j{i}" for i in range(n - 1)] + ["gripper"]
    limits = {}
    for name in names:
        if draw(st.booleans()):
            lo = draw(st.floats(-200, 200))
            limits[name] = (lo, lo + draw(st.floats(0, 300)))
    step = draw(st.none() | st.floats(0.01, 50))
    safety = SafetyLayer(names, limits, step)
    if draw(st.booleans()):
        safety.rearm(draw(arrays(np.float64, (n,), elements=st.floats(-500, 500))))
    actions = draw(st.lists(st.none() | arrays(np.float64, (n,), elements=ANY_FLOAT),
                            max_size=40))
    return safety, actions


@PROPS
@given(case=configured(), stop_at=st.none() | st.integers(0, 40))
def test_whatever_the_plan_contains_the_stream_respects_limits_and_max_step(
    case: tuple[SafetyLayer, list[np.ndarray | None]], stop_at: int | None
) -> None:
    safety, actions = case
    last = safety.last_command
    for i, action in enumerate(actions):
        if i == stop_at:
            safety.latch_stop()
        cmd = safety.filter(action)
        if cmd.values is None:
            continue
        assert i != stop_at and not safety.latched  # never published while latched
        assert np.all(np.isfinite(cmd.values))
        assert np.all(cmd.values >= safety.lo) and np.all(cmd.values <= safety.hi)
        if last is not None and safety.max_step is not None:
            assert np.all(np.abs(cmd.values - last) <= safety.max_step * (1 + 1e-12) + 1e-9)
        if action is not None and np.all(np.isfinite(action)):
            # Nothing is changed that did not need changing.
            inside = (action >= safety.lo) & (action <= safety.hi)
            if last is not None and safety.max_step is not None:
                inside &= (action >= last - safety.max_step) & (action <= last + safety.max_step)
            assert np.array_equal(cmd.values[inside], action[inside])
            changed = {e.joint for e in cmd.interventions}
            assert changed == {safety.joint_names[j] for j in np.flatnonzero(~inside)}
        last = cmd.values


def _numpy_reference(actions: list[np.ndarray], lo: np.ndarray, hi: np.ndarray,
                     step: float) -> list[tuple[list[float] | None, list[tuple[int, str]]]]:
    """The filter written with numpy's clip, as it was before the per-tick path moved to
    Python floats: the two must publish the same values and report the same changes."""
    out: list[tuple[list[float] | None, list[tuple[int, str]]]] = []
    last: np.ndarray | None = None
    for target in actions:
        if not np.all(np.isfinite(target)):
            bad = np.flatnonzero(~np.isfinite(target))
            out.append((None, [(int(i), "non_finite") for i in bad]))
            continue
        limited = np.clip(target, lo, hi)
        events = [(int(i), "limit") for i in np.flatnonzero(limited != target)]
        cmd = limited if last is None else np.clip(limited, last - step, last + step)
        events += [(int(i), "step") for i in np.flatnonzero(cmd != limited)]
        last = cmd
        out.append((cmd.tolist(), events))
    return out


@PROPS
@given(actions=st.lists(arrays(np.float64, 6, elements=ANY_FLOAT), min_size=1, max_size=12),
       step=st.floats(0.01, 50))
def test_the_filter_matches_a_numpy_clip_reference(actions: list[np.ndarray],
                                                   step: float) -> None:
    safety = SafetyLayer(JOINTS, max_step=step)
    expected = _numpy_reference(actions, safety.lo, safety.hi, step)
    for action, (values, events) in zip(actions, expected, strict=True):
        cmd = safety.filter(action)
        assert (None if cmd.values is None else cmd.values.tolist()) == values
        assert [(JOINTS.index(e.joint), e.kind) for e in cmd.interventions] == events
