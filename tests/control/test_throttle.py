"""LogThrottle."""

from __future__ import annotations

import pytest

from orchestrator.control.throttle import LogThrottle


def test_once_per_interval_per_key_and_suppressed_are_counted() -> None:
    throttle = LogThrottle(interval_s=1.0)
    assert throttle.should_log(("limit", "gripper"), 0.0)
    assert not throttle.should_log(("limit", "gripper"), 0.5)
    assert not throttle.should_log(("limit", "gripper"), 0.9)
    assert throttle.should_log(("limit", "elbow"), 0.9)  # another key is independent
    assert throttle.should_log(("limit", "gripper"), 1.0)
    assert throttle.take_suppressed(("limit", "gripper")) == 2
    assert throttle.take_suppressed(("limit", "gripper")) == 0


def test_memory_is_bounded() -> None:
    throttle = LogThrottle(interval_s=10.0, max_keys=3)
    for i in range(100):
        assert throttle.should_log(i, 0.0)
    assert len(throttle._last) == 3
    assert not throttle.should_log(99, 1.0)


@pytest.mark.parametrize("kwargs", [{"interval_s": -1.0}, {"max_keys": 0}])
def test_bad_configuration_is_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LogThrottle(**kwargs)  # type: ignore[arg-type]
