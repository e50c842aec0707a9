"""Smoke test of ``python -m bench.fidelity --quick``: one short window over the real parts
(oracle ONNX on the local Triton, the orchestrator, WebRTC robots in their own process).
It checks the report's shape and that the stream was measured, never its figures."""

from __future__ import annotations

import json
from pathlib import Path

from bench.fidelity.__main__ import main


def test_quick_run_writes_the_report_and_plots(tmp_path: Path) -> None:
    assert main(["--quick", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "fidelity.json").read_text())
    assert report["machine"]["cpus"] and report["settings"]["rate_hz"] == 30.0
    (window,) = report["windows"]
    assert "error" not in window, window
    assert window["source"] == "camera" and sum(window["robots_commands_received"]) > 0
    for label, row in window["configs"].items():
        assert row["published"] > 0 and row["merges"] > 0, label
        assert row["velocity_error_pct"]["mean"] is not None, label
        assert row["alignment_offset"]["samples"] > 0, label
    aligned = window["configs"]["crossfade"]["alignment_offset"]
    assert aligned["source"] in ("stream", "joints", "configured", "arrival")
    assert window["configs"]["replace (snapshot)"]["alignment_offset"]["ticks_p50"] == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert any(p.startswith("fidelity_tracking_") for p in pngs), pngs
    assert any(p.startswith("fidelity_merge_") for p in pngs), pngs


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    for argv in (["--latencies", "x"], ["--variants", "lidar"], ["--duration", "0"]):
        try:
            main([*argv, "--out", str(tmp_path)])
        except SystemExit as exc:
            assert exc.code != 0
        else:
            raise AssertionError(f"{argv} must be refused")
    assert not (tmp_path / "fidelity.json").exists()
