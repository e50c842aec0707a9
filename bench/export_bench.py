"""Issue 2 benchmark: export time and parity for the default ACT, ORT vs PyTorch latency.

The default ACT is LeRobot's ACTConfig (ResNet18, 512-d, 4 encoder layers, chunk 100) with
one 480x640 camera and 6 joints, random weights, saved as LeRobot saves checkpoints. We
export it with the real exporter (target: under 30 s on 2 cores), then time per-sample
latency of ONNX Runtime (the exported graph, from uint8 frames) against PyTorch (LeRobot's
preprocessor -> predict_action_chunk -> postprocessor) at batch 1, 4 and 8.

Run: ``.venv/bin/python -m bench.export_bench`` -> ``bench/results/export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from export import export_checkpoint, inspect_checkpoint
from export.graph import example_inputs, load_policy
from export.parity import cpu_session
from export.synthetic import DEFAULT_ACT, build_checkpoint
from orchestrator.triton.model_contract import STATE_INPUT, image_input

RESULTS = Path(__file__).parent / "results" / "export.json"
BATCHES = (1, 4, 8)
TARGET_EXPORT_S = 30.0


def _timed_pair(
    a: Callable[[], object], b: Callable[[], object], runs: int, warmup: int = 2
) -> tuple[list[float], list[float]]:
    """Alternate a and b run by run, so load from other processes hits both alike."""
    for _ in range(warmup):
        a()
        b()
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(runs):
        for fn, times in ((a, times_a), (b, times_b)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return times_a, times_b


def _summary(times: list[float], batch: int) -> dict[str, float]:
    ms = sorted(t * 1000 for t in times)
    return {
        "runs": len(ms),
        "batch_ms_mean": round(statistics.fmean(ms), 2),
        "batch_ms_p50": round(ms[len(ms) // 2], 2),
        "batch_ms_min": round(ms[0], 2),
        "per_sample_ms_mean": round(statistics.fmean(ms) / batch, 2),
        "per_sample_ms_p50": round(ms[len(ms) // 2] / batch, 2),
    }


def run(runs: int, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        root = Path(tmp)
        print("building the default ACT checkpoint (random weights) ...", flush=True)
        t0 = time.perf_counter()
        built = build_checkpoint(DEFAULT_ACT, root / "act")
        build_s = time.perf_counter() - t0
        print("exporting ...", flush=True)
        result = export_checkpoint(
            built.path, root / "repo", "act_default", dataset_info=built.dataset_info
        )
        print(
            f"export {result.export_seconds:.1f} s, parity {result.parity_max_abs_error:.3g}",
            flush=True,
        )
        info = inspect_checkpoint(built.path)
        loaded = load_policy(info)
        session = cpu_session(result.onnx_path, threads=threads)
        latency: dict[str, dict[str, Any]] = {}
        parity_by_batch: dict[str, float] = {}
        cam = image_input(info.cameras[0])
        for batch in BATCHES:
            state, frame = example_inputs(info, batch, seed=100 + batch)
            feeds = {STATE_INPUT: state.numpy(), cam: frame.numpy()}
            (onnx_out,) = session.run(None, feeds)
            ref = loaded.reference(state, {cam: frame}).numpy()
            parity_by_batch[str(batch)] = float(np.abs(onnx_out - ref).max())
            n = max(4, runs // batch)
            print(f"timing batch {batch} ({n} runs each) ...", flush=True)
            ort_times, torch_times = _timed_pair(
                partial(session.run, None, feeds), partial(loaded.reference, state, {cam: frame}), n
            )
            ort_s, torch_s = _summary(ort_times, batch), _summary(torch_times, batch)
            latency[str(batch)] = {
                "onnxruntime": ort_s,
                "pytorch_lerobot": torch_s,
                "speedup_p50": round(torch_s["batch_ms_p50"] / ort_s["batch_ms_p50"], 2),
            }
        return {
            "model": {
                "policy": "act",
                "vision_backbone": "resnet18",
                "image": list(DEFAULT_ACT.image_size),
                "cameras": list(DEFAULT_ACT.cameras),
                "chunk_size": DEFAULT_ACT.chunk_size,
                "joints": len(DEFAULT_ACT.joint_names),
                "dim_model": DEFAULT_ACT.dim_model,
                "onnx_mb": round(result.onnx_path.stat().st_size / 2**20, 1),
            },
            "checkpoint_build_s": round(build_s, 2),
            "export": {
                "total_s": round(result.export_seconds, 2),
                "steps_s": {k: round(v, 2) for k, v in result.timings.items()},
                "target_s": TARGET_EXPORT_S,
                "under_target": result.export_seconds < TARGET_EXPORT_S,
            },
            "parity_max_abs_error": {
                "export_check_batch_1_4": result.parity_max_abs_error,
                "by_batch": parity_by_batch,
                "tolerance": 1e-4,
            },
            "latency": latency,
            "machine": {
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "threads": threads,
                "load_average_1m_at_end": round(os.getloadavg()[0], 2),
                "torch": torch.__version__,
                "onnxruntime": metadata.version("onnxruntime"),
                "lerobot": metadata.version("lerobot"),
                "note": "shared machine: other processes may run; numbers are indicative",
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs at batch 1")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = run(args.runs, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
