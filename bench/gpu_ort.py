"""Raw ONNX Runtime throughput of one graph per execution provider and batch size.

Runs in the local Triton's own environment (``.venv-triton``: onnxruntime, or
onnxruntime-gpu on a GPU machine), so it measures the very build that serves the stack; it
imports nothing of this project. ``bench/gpu.py`` calls it and reads one JSON object:

    .venv-triton/bin/python bench/gpu_ort.py MODEL.onnx --providers cuda,tensorrt_fp16 \
        --batches 1,2,4 --seconds 1.5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from typing import Any

import numpy as np
import onnxruntime as ort

DTYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int64)": np.int64}


def providers_for(kind: str, cache: str, max_batch: int, session_inputs: list[Any]
                  ) -> list[Any]:
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if kind in ("tensorrt_fp16", "tensorrt_fp32"):
        def shapes(batch: int) -> str:
            return ",".join(f"{i.name}:{'x'.join(str(d) for d in [batch, *i.shape[1:]])}"
                            for i in session_inputs)
        options = {"trt_fp16_enable": kind.endswith("fp16"), "trt_engine_cache_enable": True,
                   "trt_engine_cache_path": cache, "trt_profile_min_shapes": shapes(1),
                   "trt_profile_opt_shapes": shapes(max_batch),
                   "trt_profile_max_shapes": shapes(max_batch)}
        return [("TensorrtExecutionProvider", options), "CUDAExecutionProvider",
                "CPUExecutionProvider"]
    raise ValueError(f"unknown provider kind {kind!r}")


def feeds(session: ort.InferenceSession, batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in session.get_inputs():
        shape = [batch, *i.shape[1:]]
        dtype = DTYPES[i.type]
        out[i.name] = (rng.integers(0, 256, shape, dtype=np.uint8) if dtype == np.uint8
                       else rng.standard_normal(shape).astype(dtype))
    return out


def measure(path: str, kind: str, batches: list[int], seconds: float, threads: int,
            cache: str) -> dict[str, Any]:
    needed = {"cuda": "CUDAExecutionProvider", "tensorrt_fp16": "TensorrtExecutionProvider",
              "tensorrt_fp32": "TensorrtExecutionProvider", "cpu": "CPUExecutionProvider"}[kind]
    if needed not in ort.get_available_providers():
        return {"available": False, "reason": f"{needed} not in this onnxruntime "
                                              f"({ort.get_available_providers()})"}
    if kind != "cpu" and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels of onnxruntime-gpu[cuda,cudnn]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    started = time.perf_counter()
    probe = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    try:
        session = ort.InferenceSession(path, options, providers=providers_for(
            kind, cache, max(batches), probe.get_inputs()))
    except Exception as exc:  # a missing CUDA/TensorRT library shows up here
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"[:400]}
    if needed not in session.get_providers():
        return {"available": False, "reason": f"session fell back to {session.get_providers()}"}
    out: dict[str, Any] = {"available": True, "session_providers": session.get_providers(),
                           "by_batch_size": {}}
    output = session.get_outputs()[0].name
    for batch in batches:
        inputs = feeds(session, batch, batch)
        t0 = time.perf_counter()
        session.run([output], inputs)  # first run at a shape: TensorRT may build here
        first_s = time.perf_counter() - t0
        times: list[float] = []
        t_start = time.perf_counter()
        while len(times) < 5 or (time.perf_counter() - t_start < seconds and len(times) < 2000):
            t0 = time.perf_counter()
            session.run([output], inputs)
            times.append(time.perf_counter() - t0)
        p50 = float(np.median(times))
        out["by_batch_size"][str(batch)] = {
            "runs": len(times), "first_run_s": round(first_s, 3),
            "batch_ms_p50": round(p50 * 1000, 3),
            "batch_ms_p99": round(float(np.percentile(times, 99)) * 1000, 3),
            "samples_per_s": round(batch / p50, 2)}
    one = out["by_batch_size"].get("1")
    for row in out["by_batch_size"].values():
        # The batching gain: samples/s at this batch over samples/s at batch 1, same run.
        row["gain_vs_batch1"] = round(row["samples_per_s"] / one["samples_per_s"], 2) \
            if one else None
    out["total_s"] = round(time.perf_counter() - started, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--providers", default="cuda", help="cpu,cuda,tensorrt_fp16,tensorrt_fp32")
    p.add_argument("--batches", default="1,2,4,8,16,32,64")
    p.add_argument("--seconds", type=float, default=1.5, help="timed seconds per batch size")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (CPU work)")
    p.add_argument("--cache", default=None, help="TensorRT engine cache folder")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b]
    cache = args.cache or tempfile.mkdtemp(prefix="trt-cache-")
    result = {"onnxruntime": ort.__version__, "device": ort.get_device(),
              "available_providers": ort.get_available_providers(), "providers": {}}
    for kind in [k for k in args.providers.split(",") if k]:
        result["providers"][kind] = measure(args.model, kind, batches, args.seconds,
                                            args.threads, cache)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
