"""``python -m bench.gpu --cpu``: the prepared GPU run at tiny sizes on CPU, through the same
code (raw ONNX Runtime in the Triton env, the stack over real parts), so it cannot rot. It
checks the report's shape, never its timings."""

from __future__ import annotations

import json
from pathlib import Path

from bench.gpu import CPU_PLAN, GPU_PLAN, main, raw_onnxruntime
from tests.support.triton import tiny_contract, write_tiny_model


def test_the_cpu_dry_run_fills_the_report_and_the_plots(tmp_path: Path) -> None:
    assert main(["--cpu", "--out", str(tmp_path), "--budget", "240"]) == 0
    report = json.loads((tmp_path / "gpu.json").read_text())
    raw = report["raw_onnxruntime"]["providers"]["cpu"]
    assert raw["available"] and raw["session_providers"] == ["CPUExecutionProvider"]
    assert set(raw["by_batch_size"]) == {"1", "2"}
    assert raw["by_batch_size"]["1"]["gain_vs_batch1"] == 1.0
    assert all(r["samples_per_s"] > 0 for r in raw["by_batch_size"].values())
    stack = report["stack"]
    assert [r["n"] for r in stack["runs"]] == list(CPU_PLAN.sessions) and not stack["skipped_n"]
    for run in stack["runs"]:
        assert "error" not in run, run
        assert run["sessions"][0]["commands_received"] > 0
        assert run["triton"]["execution_count"] > 0
        assert run["raw_ceiling"]["sessions_the_model_could_feed"] is not None
    assert set(stack["figure_of_merit"]) >= {"max_n", "max_n_rate_held", "criterion"}
    assert stack["local_triton"]["device"] in ("cpu", "gpu")
    assert report["elapsed_s"] <= 240 and report["plan"]["model"] == "tiny"
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["gpu_raw_onnxruntime.png", "gpu_stack_tiny_jitter_hist.png",
                    "gpu_stack_tiny_latency_cdf.png", "gpu_stack_tiny_rate.png"]


def test_gpu_providers_are_measured_or_say_why_not(tmp_path: Path) -> None:
    """The real run's providers: measured where this machine has them, else the reason."""
    write_tiny_model(tmp_path, tiny_contract("m"))
    raw = raw_onnxruntime(tmp_path / "m" / "1" / "model.onnx", ("cuda", "tensorrt_fp16"),
                          CPU_PLAN, 1, tmp_path / "trt", 120.0)
    for kind in ("cuda", "tensorrt_fp16"):
        entry = raw["providers"][kind]
        assert entry["by_batch_size"] if entry["available"] else entry["reason"], entry
    assert GPU_PLAN.batches == (1, 2, 4, 8, 16, 32, 64)
    assert GPU_PLAN.sessions == (1, 8, 32, 64, 128) and GPU_PLAN.model == "default"
