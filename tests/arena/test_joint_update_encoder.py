"""The producer's joint_update text: the message json.dumps would write, validated the same."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.arena.messages import JointUpdateEncoder, parse_robotics

NAMES = st.text(min_size=1, max_size=12)  # any text: quotes, "%", backslashes, unicode
VALUES = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6)


@settings(deadline=None, max_examples=200)
@given(st.lists(st.dictionaries(NAMES, VALUES, min_size=1, max_size=8), min_size=1,
                max_size=4))
def test_the_text_parses_to_the_message_json_dumps_would_send(
        commands: list[dict[str, float]]) -> None:
    encoder = JointUpdateEncoder()
    for command in commands * 2:  # the second round comes from the cached templates
        text = encoder.encode(command)
        expected = {"type": "joint_update",
                    "data": [{"name": n, "value": float(v)} for n, v in command.items()]}
        assert json.loads(text) == expected
        assert json.loads(text) == json.loads(json.dumps(expected))


def test_numpy_floats_and_ints_go_out_as_floats_and_the_server_side_parser_accepts_it() -> None:
    text = JointUpdateEncoder().encode({"a": np.float64(1.5), "b": 2})
    assert json.loads(text)["data"] == [{"name": "a", "value": 1.5}, {"name": "b", "value": 2.0}]
    assert type(parse_robotics(text)).__name__ == "JointUpdate"


@pytest.mark.parametrize(("command", "match"), [
    ({}, "at least one joint"),
    ({"": 1.0}, "non-empty strings"),
    ({3: 1.0}, "non-empty strings"),
    ({"a": True}, "must be a number"),
    ({"a": "1.0"}, "must be a number"),
    ({"a": np.float32(1.0)}, "must be a number"),  # as before: float and int (subclasses) only
    ({"a": math.nan}, "must be finite"),
    ({"a": 1.0, "b": math.inf}, "must be finite"),
])
def test_bad_commands_raise_and_a_good_one_still_encodes_after(
        command: dict[object, object], match: str) -> None:
    encoder = JointUpdateEncoder()
    with pytest.raises(ValueError, match=match):
        encoder.encode(command)  # type: ignore[arg-type]
    assert json.loads(encoder.encode({"a": 1.0}))["data"] == [{"name": "a", "value": 1.0}]
