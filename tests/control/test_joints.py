"""JointMapper: readings by name into the model's state, actions back to robot names."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.control.joints import MAX_ABS_VALUE, JointMapper

SO100 = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
SEED_ALIASES = {"base_rotation": "shoulder_pan", "shoulder_tilt": "shoulder_lift",
                "elbow_bend": "elbow_flex"}


def test_ready_only_after_every_joint_had_a_real_reading() -> None:
    mapper = JointMapper(SO100)
    assert not mapper.ready and mapper.state() is None
    mapper.update({}, stamp=1.0)  # the empty state_sync on join is not a reading
    assert not mapper.ready and mapper.last_update is None
    mapper.update({n: float(i) for i, n in enumerate(SO100[:-1])}, stamp=2.0)
    assert not mapper.ready and mapper.missing == ("gripper",)
    mapper.update([{"name": "gripper", "value": 40}], stamp=3.0)
    state = mapper.state()
    assert state is not None and state.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 40.0]
    assert mapper.last_update == 3.0


def test_a_partial_update_does_not_zero_the_other_joints() -> None:
    mapper = JointMapper(SO100)
    mapper.update({n: 10.0 for n in SO100}, stamp=0.0)
    mapper.update([{"name": "elbow_flex", "value": -5.0}], stamp=1.0)
    state = mapper.state()
    assert state is not None and state.tolist() == [10.0, 10.0, -5.0, 10.0, 10.0, 10.0]


def test_unknown_names_are_counted_and_never_shift_into_another_slot() -> None:
    mapper = JointMapper(["a", "b"])
    result = mapper.update({"zzz": 7.0, "b": 2.0, "a": 1.0}, stamp=0.0)
    assert result.accepted == 2 and result.unknown == ("zzz",)
    state = mapper.state()
    assert state is not None and state.tolist() == [1.0, 2.0]
    assert mapper.unknown_count == 1 and mapper.unknown_names == {"zzz"}


def test_invalid_values_are_counted_and_ignored() -> None:
    mapper = JointMapper(["a", "b"])
    junk: list[object] = [{"name": "a", "value": "1"}, {"name": "b", "value": math.nan},
                          {"name": "a", "value": True}, {"name": "b"}, "junk", {"value": 3}]
    result = mapper.update(junk, stamp=0.0)  # type: ignore[arg-type]  # wire data is untyped
    assert result.accepted == 0 and result.invalid == ("a", "b", "a", "b")
    assert len(result.unknown) == 2 and not mapper.readings()
    assert mapper.invalid_count == 4


def test_absurd_magnitudes_are_invalid_not_overflowed_to_inf() -> None:
    mapper = JointMapper(["a", "b"])
    result = mapper.update({"a": 1e300, "b": -MAX_ABS_VALUE * 2}, stamp=0.0)
    assert result.accepted == 0 and result.invalid == ("a", "b")
    assert mapper.update({"a": MAX_ABS_VALUE, "b": -5.0}, stamp=1.0).accepted == 2


def test_aliases_and_lerobot_suffix_resolve_to_the_same_slot() -> None:
    mapper = JointMapper([f"{n}.pos" for n in SO100], SEED_ALIASES)
    assert mapper.index_of("base_rotation") == 0
    assert mapper.index_of("shoulder_pan") == 0
    assert mapper.index_of("shoulder_pan.pos") == 0
    assert mapper.index_of("gripper") == 5
    assert mapper.index_of("unknown") is None
    plain = JointMapper(SO100)
    assert plain.index_of("gripper.pos") == 5


def test_commands_go_out_under_the_robots_own_names() -> None:
    mapper = JointMapper([f"{n}.pos" for n in SO100], SEED_ALIASES)
    mapper.update({"elbow_flex": 1.0, "wrist_flex": 2.0}, stamp=0.0)  # robot omits .pos
    command = mapper.to_command(np.arange(6, dtype=np.float64))
    assert command == {"base_rotation": 0.0, "shoulder_tilt": 1.0, "elbow_bend": 2.0,
                       "wrist_flex": 3.0, "wrist_roll.pos": 4.0, "gripper.pos": 5.0}


def test_a_name_the_robot_reports_later_renames_the_next_command() -> None:
    mapper = JointMapper([f"{n}.pos" for n in SO100])
    assert list(mapper.to_command(np.zeros(6)))[3] == "wrist_flex.pos"
    mapper.update({"wrist_flex": 2.0}, stamp=0.0)  # the robot's name, without .pos
    assert list(mapper.to_command(np.zeros(6)))[3] == "wrist_flex"
    assert not mapper.ready
    mapper.update({f"{n}.pos": 1.0 for n in SO100}, stamp=1.0)
    assert mapper.ready
    mapper.reset()
    assert not mapper.ready and mapper.state() is None


def test_action_names_may_differ_from_state_names() -> None:
    mapper = JointMapper(["a", "b"], action_names=["b", "c"])
    mapper.update({"b.pos": 1.0}, stamp=0.0)
    assert mapper.to_command([1.0, 2.0]) == {"b.pos": 1.0, "c": 2.0}
    with pytest.raises(ValueError, match="2 values"):
        mapper.to_command([1.0])


def test_bad_configuration_is_rejected() -> None:
    with pytest.raises(ValueError):
        JointMapper([])
    with pytest.raises(ValueError):
        JointMapper(["a", "a"])
    with pytest.raises(ValueError, match="no joint 'x'"):
        JointMapper(["a"], {"robot_a": "x"})


def test_reset_forgets_readings_but_keeps_counters() -> None:
    mapper = JointMapper(["a"])
    mapper.update({"a": 1.0, "b": 2.0}, stamp=0.0)
    mapper.reset()
    assert not mapper.ready and mapper.last_update is None and mapper.unknown_count == 1


def test_unknown_name_memory_is_bounded() -> None:
    mapper = JointMapper(["a"])
    mapper.update({f"junk{i}": 0.0 for i in range(1000)}, stamp=0.0)
    assert mapper.unknown_count == 1000 and len(mapper.unknown_names) <= 32


@settings(deadline=None, max_examples=150)
@given(
    updates=st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c", "x", "y"]),
                        st.floats(-1e6, 1e6, allow_nan=False)),
        max_size=8,
    )
)
def test_state_is_the_last_reading_of_each_joint_by_name(
    updates: list[dict[str, float]]
) -> None:
    mapper = JointMapper(["a", "b", "c"])
    last: dict[str, float] = {}
    for i, update in enumerate(updates):
        mapper.update(update, stamp=float(i))
        last.update({k: v for k, v in update.items() if k in "abc"})
    assert mapper.readings() == last
    assert mapper.ready == (len(last) == 3)
    if mapper.ready:
        state = mapper.state()
        assert state is not None and state.tolist() == [last["a"], last["b"], last["c"]]


FRONT_END = ["Rotation", "Pitch", "Elbow", "Wrist_Pitch", "Wrist_Roll", "Jaw"]
SO101_POS = [f"{n}.pos" for n in SO100]


@pytest.mark.parametrize("model_names", [SO100, SO101_POS])
def test_front_end_robot_names_drive_so100_models_without_configuration(
    model_names: list[str],
) -> None:
    mapper = JointMapper(model_names)
    mapper.update([{"name": n, "value": float(i)} for i, n in enumerate(FRONT_END)], stamp=1.0)
    state = mapper.state()
    assert state is not None and state.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # Commands go out under the robot's own names, in the model's action order.
    command = mapper.to_command(np.arange(6.0) * 10)
    assert command == {n: 10.0 * i for i, n in enumerate(FRONT_END)}
    described = mapper.describe_mapping()
    assert described["robot_to_model"] == dict(zip(FRONT_END, model_names, strict=True))
    assert described["missing"] == [] and described["unmapped"] == []


def test_plain_names_drive_pos_models_and_answers_use_them() -> None:
    mapper = JointMapper(SO101_POS)
    mapper.update({n: 1.0 for n in SO100}, stamp=1.0)
    assert mapper.ready
    assert list(mapper.to_command(np.zeros(6))) == SO100


def test_mapping_reports_what_it_could_not_map_and_aliases_override() -> None:
    mapper = JointMapper(SO100, {"Jaw": "wrist_roll", "claw": "gripper"})
    mapper.update({"Rotation": 1.0, "Jaw": 2.0, "claw": 3.0, "Tail": 4.0}, stamp=1.0)
    readings = mapper.readings()
    assert readings["wrist_roll"] == 2.0 and readings["gripper"] == 3.0  # the alias wins
    described = mapper.describe_mapping()
    assert described["unmapped"] == ["Tail"]
    assert described["missing"] == ["shoulder_lift", "elbow_flex", "wrist_flex"]
    assert described["robot_to_model"]["Rotation"] == "shoulder_pan"


def test_known_names_only_for_the_joints_a_model_has() -> None:
    mapper = JointMapper(["x", "y"])
    result = mapper.update({"Rotation": 1.0, "x": 2.0}, stamp=1.0)
    assert result.unknown == ("Rotation",)


def test_a_robot_whose_joint_names_are_the_models_the_other_way_round() -> None:
    """Aliases that swap two model names resolve against the model's names, whatever their
    order: both wrists landed in one slot (the session waited for joints for ever) and one
    wrist's command was dropped."""
    swap = {"wrist_flex": "wrist_roll", "wrist_roll": "wrist_flex"}
    for aliases in (swap, dict(reversed(swap.items()))):
        mapper = JointMapper(SO100, aliases)
        mapper.update({**{n: 0.0 for n in SO100}, "wrist_flex": 1.0, "wrist_roll": 2.0}, 1.0)
        assert mapper.ready
        assert mapper.readings()["wrist_roll"] == 1.0 and mapper.readings()["wrist_flex"] == 2.0
        command = mapper.to_command(np.arange(6, dtype=np.float64))
        assert len(command) == 6
        assert command["wrist_roll"] == 3.0 and command["wrist_flex"] == 4.0  # model order


def test_an_alias_that_takes_another_joints_name_is_refused() -> None:
    """{"a": "b"} on model [a, b, c]: the robot's "a" is model b, and model a has no name
    left: its readings could not arrive and its command would overwrite b's."""
    with pytest.raises(ValueError, match="alias 'a' -> 'b' takes the name of model joint 'a'"):
        JointMapper(["a", "b", "c"], {"a": "b"})
    JointMapper(["a", "b", "c"], {"a": "b", "z": "a"})  # a keeps a name: accepted
    JointMapper(["a.pos", "b.pos"], {"a": "a.pos"})  # its own twin: nothing taken


def test_after_a_reset_commands_follow_the_names_the_next_robot_reports() -> None:
    mapper = JointMapper(["shoulder_pan", "gripper"])
    mapper.update({"Rotation": 5.0, "Jaw": 6.0}, stamp=1.0)
    assert set(mapper.to_command(np.zeros(2))) == {"Rotation", "Jaw"}
    mapper.reset()
    mapper.update({"shoulder_pan.pos": 1.0, "gripper.pos": 2.0}, stamp=2.0)
    assert set(mapper.to_command(np.zeros(2))) == {"shoulder_pan.pos", "gripper.pos"}


def test_an_integer_too_large_for_a_float_is_an_invalid_reading() -> None:
    mapper = JointMapper(["a", "b"])
    result = mapper.update({"a": 10**400, "b": 1.0}, stamp=0.0)  # float() raised OverflowError
    assert result.invalid == ("a",) and result.accepted == 1


def test_with_unread_set_the_state_is_ready_at_the_first_reading() -> None:
    """The RobotHub page sends a joint only once it moves, its robot starting at 0: with
    ``unread=0`` the unsent joints read as 0 (as the server it replaces read them) and the
    commands name every joint in the page's own spelling."""
    mapper = JointMapper([f"{n}.pos" for n in SO100], unread=0.0)
    mapper.update({}, stamp=1.0)
    assert not mapper.ready and mapper.state() is None  # nothing read: nothing to infer
    mapper.update([{"name": "Pitch", "value": 12.0}], stamp=2.0)
    state = mapper.state()
    assert mapper.ready and state is not None and state.tolist() == [0, 12, 0, 0, 0, 0]
    assert mapper.missing == ("shoulder_pan.pos", "elbow_flex.pos", "wrist_flex.pos",
                              "wrist_roll.pos", "gripper.pos")  # still said, for the status
    assert list(mapper.to_command(np.arange(6.0))) == [
        "Rotation", "Pitch", "Elbow", "Wrist_Pitch", "Wrist_Roll", "Jaw"]
    mapper.update([{"name": "jaw", "value": 30.0}], stamp=3.0)  # reported: its own spelling
    assert list(mapper.to_command(np.arange(6.0)))[5] == "jaw"
    mapper.reset()
    assert not mapper.ready and mapper.state() is None


@given(st.lists(st.sampled_from(SO100), min_size=1, unique=True), st.floats(-100, 100))
def test_unread_joints_take_the_value_and_read_ones_theirs(read: list[str], unread: float
                                                           ) -> None:
    mapper = JointMapper(SO100, unread=unread)
    mapper.update({n: float(SO100.index(n)) for n in read}, stamp=1.0)
    state = mapper.state()
    assert state is not None
    assert state.tolist() == [float(i) if n in read else unread for i, n in enumerate(SO100)]
    assert set(mapper.missing) == set(SO100) - set(read)
