"""Smoke test of the comparison bench's session-worker design (``--designs workers_2``):
one session in a fleet of two Ray workers for a few seconds, tiny ACT, over the real parts.
Here (tests/fleet runs in a pytest process of its own) rather than beside the other
designs' smoke test. It checks the report's shape and that the figures come from the
workers, never timings."""

from __future__ import annotations

from bench.comparison.runner import Options, run


async def test_the_workers_design_is_measured_from_its_workers() -> None:
    opts = Options(models=["tiny"], n_by_model={"tiny": [1]}, duration_s=2.0, warmup_s=0.3,
                   camera_size=(64, 48), camera_fps=10.0, ceiling_seconds=0.2,
                   designs=["workers_2"])
    report, _ = await run(opts)
    (result,) = report["models"]["tiny"]["runs"]
    assert "error" not in result, result
    assert result["design"] == "workers_2" and result["jitter_source"] == "arrival"
    assert result["sessions"][0]["commands_received"] > 0
    assert result["publish_jitter_ms"]["n"] > 0  # the robot's arrivals
    # Counters come from the session's stats in its worker, CPU from the worker processes.
    assert result["counters"]["ticks"] > 0 and result["counters"]["commands"] > 0
    workers = {k for k in result["cpu_cores"] if k.startswith("orchestrator-worker-")}
    assert len(workers) == 2, result["cpu_cores"]
    assert result["control_plane"]["workers_ms_per_session_tick"] > 0
    assert result["triton"]["execution_count"] > 0
