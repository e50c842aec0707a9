"""Issue 3 benchmark: the Triton client against ONNX Runtime in-process.

For the tiny test model and the default ACT (LeRobot's default architecture,
random weights, exported by ``export``), on one real local Triton:
- per-request latency of ONNX Runtime in-process vs the client (plain gRPC and
  system shared memory), batch 1, one request at a time: the overhead;
- throughput at 1, 8 and 32 concurrent requests (batch 1 each) with the batch
  sizes Triton reports (inference/execution counts, histogram).

Run: ``.venv/bin/python -m bench.triton_bench`` -> ``bench/results/triton.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from orchestrator.triton.client import ModelStatistics, TritonClient
from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.model_contract import ACTION_OUTPUT, ModelContract
from tests.support.triton import random_observation, tiny_contract, write_tiny_model

RESULTS = Path(__file__).parent / "results" / "triton.json"
CONCURRENCY = (1, 8, 32)
MODES = ("grpc", "shm")


@dataclass(frozen=True)
class BenchModel:
    name: str
    onnx_path: Path
    contract: ModelContract
    requests: int  # per throughput level
    latency_runs: int


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "mean": round(statistics.fmean(ms), 3),
        "p50": round(ms[len(ms) // 2], 3),
        "p90": round(ms[min(len(ms) - 1, int(len(ms) * 0.9))], 3),
        "min": round(ms[0], 3),
    }


def build_act(root: Path, image: tuple[int, int], requests: int) -> BenchModel:
    """ACT with LeRobot's default architecture (resnet18, 512-d, chunk 100), random weights."""
    from export.api import export_checkpoint  # the export extra: torch + lerobot
    from export.synthetic import CheckpointSpec, build_checkpoint

    spec = CheckpointSpec(
        cameras=("front",), image_size=image, chunk_size=100, n_action_steps=100,
        dim_model=512, n_heads=8, dim_feedforward=3200, n_encoder_layers=4,
        n_decoder_layers=1, latent_dim=32,
    )  # fmt: skip
    built = build_checkpoint(spec, root / "act_checkpoint")
    result = export_checkpoint(
        built.path, root / "repo", "act_default", dataset_info=built.dataset_info, kind="cpu"
    )
    return BenchModel("act_default", result.onnx_path, result.contract, requests, 30)


def ort_session(model: BenchModel, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(
        str(model.onnx_path), options, providers=["CPUExecutionProvider"]
    )


async def paired_latency(
    session: ort.InferenceSession, client: TritonClient, model: BenchModel
) -> dict[str, Any]:
    """Alternate in-process and Triton runs on one input: neighbours' load hits both alike."""
    obs = random_observation(model.contract, 1, seed=0)
    for _ in range(3):
        session.run([ACTION_OUTPUT], obs)
        await client.infer(model.name, obs)
    local: list[float] = []
    remote: list[float] = []
    for _ in range(model.latency_runs):
        t0 = time.perf_counter()
        session.run([ACTION_OUTPUT], obs)
        t1 = time.perf_counter()
        await client.infer(model.name, obs)
        t2 = time.perf_counter()
        local.append(t1 - t0)
        remote.append(t2 - t1)
    overhead = sorted(r - loc for r, loc in zip(remote, local, strict=True))
    return {
        "ort_in_process_ms": summary_ms(local),
        "client_ms": summary_ms(remote),
        "overhead_ms_p50": round(overhead[len(overhead) // 2] * 1000, 3),
    }


def stats_delta(before: ModelStatistics, after: ModelStatistics) -> dict[str, Any]:
    sizes = {
        size: count - before.batch_sizes.get(size, 0)
        for size, count in after.batch_sizes.items()
        if count - before.batch_sizes.get(size, 0) > 0
    }
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    return {
        "inference_count": inferences,
        "execution_count": executions,
        "avg_batch_size": round(inferences / executions, 2) if executions else 0.0,
        "batch_sizes": {str(k): v for k, v in sorted(sizes.items())},
    }


async def throughput(client: TritonClient, model: BenchModel, concurrency: int) -> dict[str, Any]:
    observations = [random_observation(model.contract, 1, seed=i) for i in range(concurrency)]
    await asyncio.gather(*(client.infer(model.name, o) for o in observations))  # warm-up
    per_worker = max(1, model.requests // concurrency)
    latencies: list[float] = []

    async def worker(obs: dict[str, np.ndarray]) -> None:
        for _ in range(per_worker):
            t0 = time.perf_counter()
            await client.infer(model.name, obs)
            latencies.append(time.perf_counter() - t0)

    before = await client.statistics(model.name)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(o) for o in observations))
    elapsed = time.perf_counter() - t0
    after = await client.statistics(model.name)
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 2),
        "latency_ms": summary_ms(latencies),
        **stats_delta(before, after),
    }


async def bench_model(triton: LocalTriton, model: BenchModel, threads: int) -> dict[str, Any]:
    session = ort_session(model, threads)
    result: dict[str, Any] = {
        "model": model.name,
        "contract": {
            "cameras": {c: list(model.contract.image_sizes[c]) for c in model.contract.cameras},
            "state_dim": model.contract.state_dim,
            "chunk_size": model.contract.chunk_size,
            "action_dim": model.contract.action_dim,
        },
        "onnx_mb": round(model.onnx_path.stat().st_size / 2**20, 2),
        "latency_batch1": {},  # per mode: ORT in-process vs client, alternating
        "throughput": {},
    }
    for mode in MODES:
        async with TritonClient(
            triton.grpc_url, timeout_s=120.0, shared_memory=(mode == "shm")
        ) as client:
            print(f"[{model.name}] {mode}: latency vs ONNX Runtime in-process ...", flush=True)
            result["latency_batch1"][mode] = await paired_latency(session, client, model)
            levels = []
            for concurrency in CONCURRENCY:
                print(f"[{model.name}] {mode}: {concurrency} concurrent ...", flush=True)
                levels.append(await throughput(client, model, concurrency))
            result["throughput"][mode] = levels
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tiny-requests", type=int, default=320)
    parser.add_argument("--act-requests", type=int, default=64)
    parser.add_argument("--act-image", default="240x320", help="HxW of the ACT camera")
    parser.add_argument("--no-act", action="store_true", help="tiny model only")
    parser.add_argument("--ort-threads", type=int, default=1, help="in-process and in Triton")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    contract = tiny_contract("tiny_act", cameras=("front",), image_size=(96, 128))
    tiny_onnx = write_tiny_model(work / "repo", contract)
    models = [BenchModel("tiny_act", tiny_onnx, contract, args.tiny_requests, 200)]
    if not args.no_act:
        h, w = (int(x) for x in args.act_image.lower().split("x"))
        print(f"building and exporting the default ACT ({h}x{w}) ...", flush=True)
        models.append(build_act(work, (h, w), args.act_requests))
    load = os.getloadavg()
    with LocalTriton(work / "repo", work_dir=work / "triton", ort_threads=args.ort_threads) as t:
        results = [await bench_model(t, m, args.ort_threads) for m in models]
    return {
        "benchmark": "triton client vs onnxruntime in-process (issue 3)",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_at_start": [round(x, 2) for x in load],
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
        },
        "settings": {
            "ort_threads": args.ort_threads,
            "concurrency": list(CONCURRENCY),
            "modes": list(MODES),
            "request_batch_size": 1,
        },
        "models": results,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="triton-bench-") as tmp:
        report = asyncio.run(run(args, Path(tmp)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for model in report["models"]:
        print(f"\n{model['model']}:")
        for mode, lat in model["latency_batch1"].items():
            print(f"  {mode:4} batch 1: ORT in-process p50 {lat['ort_in_process_ms']['p50']} ms, "
                  f"client p50 {lat['client_ms']['p50']} ms, overhead p50 "
                  f"{lat['overhead_ms_p50']} ms")
        for mode, levels in model["throughput"].items():
            for level in levels:
                print(f"  {mode:4} x{level['concurrency']:<3} {level['requests_per_s']:8.1f} req/s"
                      f"  p50 {level['latency_ms']['p50']:8.2f} ms"
                      f"  avg batch {level['avg_batch_size']}")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
