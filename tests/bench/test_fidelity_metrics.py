"""bench/fidelity's pure parts: the figures of a published stream, the LeRobot reference
blends, the oracle graph (ONNX Runtime on the exported file) reading positions from a
frame drawn by the simulated camera."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bench.fidelity.blends import AGGREGATES, AggregatePlan, QueueFractionRefill
from bench.fidelity.metrics import MergeRecord, crossfade_bound_violations, fidelity
from bench.fidelity.oracle import OracleSpec, export_oracle
from sim_robot.pattern import PatternGenerator

U = 0.5  # per tick: v = 15 units/s at 30 Hz


def ramp(ticks: range, start: float = 0.0) -> dict[int, np.ndarray]:
    return {k: np.array([start + U * k]) for k in ticks}


def test_a_perfect_ramp_scores_perfectly() -> None:
    published = ramp(range(100))
    merge = MergeRecord(k_now=49, align_tick=45, request_tick=49,
                        chunk=np.array([[U * (45 + i)] for i in range(50)]))
    out = fidelity(range(100), published, [merge], [15.0], 30.0, max_step=10.0)
    assert out["velocity_error_pct"]["mean"] == 0.0 and out["slope_vs_ideal"] == 1.0
    assert out["seams"]["backtracks"] == 0 and out["seams"]["ratio"] == 1.0
    assert out["lag_ticks"]["mean"] == 0.0 and out["starved_ticks"] == 0
    assert out["steps_over_max_step"] == 0


def test_a_chunk_that_replays_the_past_is_a_backtrack_with_lag() -> None:
    published = ramp(range(50))
    published.update({k: np.array([U * (k - 3)]) for k in range(50, 100)})  # 3 ticks back
    merge = MergeRecord(49, 50, 49, np.array([[U * (47 + i)] for i in range(50)]))
    out = fidelity(range(100), published, [merge], [15.0], 30.0)
    assert out["seams"]["backtracks_at_merge"] == 1 and out["seams"]["backtracks"] == 1
    assert out["lag_ticks"]["mean"] == pytest.approx(3.0)
    assert out["seams"]["ratio"] == pytest.approx(2 * U / U)  # |-2U| over U
    assert out["velocity_error_pct"]["mean"] < 0


def test_starved_ticks_are_counted_and_skipped() -> None:
    published = {k: v for k, v in ramp(range(60)).items() if not 20 <= k < 25}
    out = fidelity(range(60), published, [], [15.0], 30.0)
    assert out["starved_ticks"] == 5 and out["published"] == 55


def test_crossfade_bound_counts_steps_beyond_the_weights_rise() -> None:
    published = ramp(range(40))
    merge = MergeRecord(19, 15, 19, np.zeros((30, 1)), fade_ticks=4, fade_first=5, gap=2.0)
    assert crossfade_bound_violations(published, [merge], [15.0], 30.0) == 0
    published[21] = published[21] + 1.5  # w rises 1/4 per tick: at most U + 0.5
    assert crossfade_bound_violations(published, [merge], [15.0], 30.0) >= 1


def test_lerobot_aggregates_combine_each_overlapping_step_once() -> None:
    for name, expected in (("weighted_average", 7.0), ("latest_only", 10.0),
                           ("average", 5.0), ("conservative", 3.0)):
        plan = AggregatePlan(1, 10, name)
        plan.merge(np.zeros((10, 1)), 0, -1)
        plan.merge(np.full((10, 1), 10.0), 0, -1)
        assert plan.action_for(3)[0] == pytest.approx(expected), name
    assert set(AGGREGATES) == {"weighted_average", "latest_only", "average", "conservative"}
    refill = QueueFractionRefill(50, 0.5)
    assert refill.should_request(10, 25, False, 0.1, 30.0, None, True)
    assert not refill.should_request(10, 26, False, 0.1, 30.0, None, True)
    assert not refill.should_request(10, 5, True, 0.1, 30.0, None, True)


@pytest.mark.parametrize("source", ["state", "camera"])
def test_the_oracle_continues_what_it_observes(tmp_path: Path, source: str) -> None:
    spec = OracleSpec(f"o_{source}", source, ("a", "b"), (20.0, -12.0))  # type: ignore[arg-type]
    version = export_oracle(spec, tmp_path / "repo")
    assert (tmp_path / "repo" / spec.name / "config.pbtxt").is_file()
    session = ort.InferenceSession(str(version / "model.onnx"))
    luma = PatternGenerator(192, 144, 2).planes(5, [12.5, -300.25])[:144]
    image = np.repeat(luma[:, :, None], 3, axis=2)[None]
    state = np.array([[1.0, 2.0]], dtype=np.float32)
    out = session.run(None, {"observation.state": state, "observation.images.front": image})[0]
    base = state[0] if source == "state" else np.array([12.5, -300.25])
    steps = np.arange(1, 51)[:, None] * np.array([20.0, -12.0]) / 30.0
    assert out.shape == (1, 50, 2)
    np.testing.assert_allclose(out[0], base + steps, atol=1e-3)
