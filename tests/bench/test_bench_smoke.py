"""Smoke test of the comparison benchmark (``python -m bench``): one session of each design
for a few seconds with the tiny ACT, over the real parts (local Triton, room server, WebRTC
robots in their own process). It checks the report's shape, never its timings."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import main
from bench.comparison.report import plot_model
from bench.comparison.runner import Options, run

RUN_FIELDS = {"design", "n", "rate_hz", "ok", "holds_rate", "fell_over", "achieved_hz",
              "publish_jitter_ms", "arrival_jitter_ms", "obs_to_command_ms", "inference_ms",
              "plan_underruns", "missed_ticks", "cpu_cores", "triton", "sessions",
              "control_plane", "timer_thread_probe"}


async def test_one_session_of_each_design_fills_the_report(tmp_path: Path) -> None:
    # The session workers (Ray) have a smoke test of their own: tests/fleet/test_bench_workers.py.
    opts = Options(models=["tiny"], n_by_model={"tiny": [1]}, duration_s=1.5, warmup_s=0.2,
                   camera_size=(64, 48), camera_fps=10.0, ceiling_seconds=0.2,
                   designs=["stack_per_session", "stack", "baseline_onnxruntime",
                            "baseline_pytorch"])
    report, samples = await run(opts)

    section = report["models"]["tiny"]
    runs = {r["design"]: r for r in section["runs"]}
    assert set(runs) == {"stack", "stack_per_session", "baseline_onnxruntime",
                         "baseline_pytorch"}
    for design, result in runs.items():
        assert "error" not in result, result
        assert set(result) >= RUN_FIELDS, (design, RUN_FIELDS - set(result))
        assert result["n"] == 1 and len(result["sessions"]) == 1
        assert result["sessions"][0]["commands_received"] > 0, design
        assert result["publish_jitter_ms"]["n"] > 0, design
        assert result["inference_ms"]["n"] >= 0 and result["cpu_cores"]["process_under_test"] >= 0
    # The stack's tick path is measured in both of its designs; only the shared scheduler
    # has passes.
    for design in ("stack", "stack_per_session"):
        cp = runs[design]["control_plane"]
        assert cp["session_ticks"] > 0 and cp["tick_ms_per_session_tick"] > 0, (design, cp)
        assert cp["send_ms_per_session_tick"] is not None
        assert cp["event_loop_thread_ms_per_session_tick"] > 0
    assert runs["stack"]["control_plane"]["scheduler"]["passes"] > 0
    assert runs["stack"]["timer_thread_probe"]["lateness_ms"]["n"] > 0
    assert "scheduler" not in runs["stack_per_session"]["control_plane"]
    # Only the stack goes through Triton: its batch sizes come from Triton's statistics.
    stack = runs["stack"]
    assert stack["triton"]["execution_count"] > 0
    assert set(stack["triton"]["batch_sizes"]) <= set(section["ceiling"]["by_batch_size"])
    assert stack["ceiling"]["fraction"] > 0
    assert runs["baseline_onnxruntime"]["triton"] is None
    assert set(section["figure_of_merit"]) == set(runs)
    assert report["machine"]["cpus"] and report["settings"]["duration_s"] == 1.5

    pngs = plot_model("tiny", section, samples["tiny"], tmp_path)
    assert all(p.stat().st_size > 0 for p in pngs) and len(pngs) == 3


def test_the_command_line_rejects_an_unknown_model(tmp_path: Path) -> None:
    try:
        main(["--models", "huge", "--out", str(tmp_path)])
    except SystemExit as exc:
        assert exc.code != 0
    else:
        raise AssertionError("an unknown model size must be refused")
