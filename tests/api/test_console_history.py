"""The command history behind the console's per-joint plot (``stats.recent_commands``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.sessions.report import CommandHistory


def test_history_thins_keeps_a_window_and_skips_unsent_commands() -> None:
    h = CommandHistory(window_s=1.0, min_interval_s=0.1)
    for i in range(60):  # 30 Hz for 2 s
        h.record({"a": float(i), "b": -float(i)}, i / 30, True, None)
    h.record({"a": 999.0, "b": 999.0}, 2.5, False, None)  # not sent: not plotted
    out = h.as_dict(now=59 / 30)
    assert out["joints"] == ["a", "b"]
    ages = [s[0] for s in out["samples"]]
    assert all(0 <= a <= 1.0 for a in ages) and ages == sorted(ages, reverse=True)
    assert 8 <= len(ages) <= 11  # about one per 0.1 s over the last second
    assert all(s[2] == -s[1] for s in out["samples"])
    assert 999.0 not in [s[1] for s in out["samples"]]


def test_empty_history() -> None:
    assert CommandHistory().as_dict(now=5.0) == {"joints": [], "samples": []}


@given(st.lists(st.floats(0.001, 0.5), min_size=1, max_size=300))
def test_history_stays_bounded_whatever_the_timing(gaps: list[float]) -> None:
    h = CommandHistory(window_s=5.0, min_interval_s=0.1)
    t = 0.0
    for gap in gaps:
        t += gap
        h.record({"j": t}, t, True, None)
    samples = h.as_dict(now=t)["samples"]
    assert len(samples) <= 51  # 5 s at most one per 0.1 s, plus the edge
    assert all(0 <= s[0] <= 5.0 for s in samples)
