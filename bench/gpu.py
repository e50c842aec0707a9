"""``python -m bench.gpu``: the GPU run (issue 14), within a time budget (default 8 min).

1. Raw ONNX Runtime for the default ACT (LeRobot's ACTConfig, ResNet18 on 480x640, chunk
   100) at batch 1..64 with the CUDA provider, then TensorRT fp16 where the Triton env's
   onnxruntime has it: the ceiling, and the batching gain (samples/s at batch b over batch 1,
   same run). Measured in ``.venv-triton`` (``bench/gpu_ort.py``), the build that serves the
   stack.
2. The full stack with the default ACT at N = 1, 8, 32, 64, 128 sessions through the
   comparison machinery (``bench/comparison``: local Triton, room server, WebRTC robots in
   their own process), with its figure of merit.

``--cpu``: the same code at tiny sizes on CPU (the test suite runs it so it cannot rot).
Writes ``gpu.json`` and PNGs under ``--out`` (default ``bench/results/gpu``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.comparison.models import BenchModel
from bench.comparison.runner import (
    Options,
    RunSamples,
    figure_of_merit,
    machine,
    run_one,
)
from orchestrator.triton.triton_env import find_triton_env

log = logging.getLogger("bench.gpu")
RESULTS = Path(__file__).parent / "results" / "gpu"
ORT_SCRIPT = Path(__file__).with_name("gpu_ort.py")


@dataclass(frozen=True)
class Plan:
    model: str  # a key of bench.comparison.models.SPECS
    providers: tuple[str, ...]  # gpu_ort.py kinds, in order
    batches: tuple[int, ...]
    seconds_per_batch: float
    sessions: tuple[int, ...]
    duration_s: float
    warmup_s: float
    camera_size: tuple[int, int]


GPU_PLAN = Plan("default", ("cuda", "tensorrt_fp16"), (1, 2, 4, 8, 16, 32, 64), 1.5,
                (1, 8, 32, 64, 128), 12.0, 3.0, (128, 96))
CPU_PLAN = Plan("tiny", ("cpu",), (1, 2), 0.2, (1, 2), 1.5, 0.2, (64, 48))


def gpu_description() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def raw_onnxruntime(onnx_path: Path, kinds: tuple[str, ...], plan: Plan, threads: int,
                    cache: Path, timeout_s: float) -> dict[str, Any]:
    python = find_triton_env().bin_dir / "python"
    cmd = [str(python), str(ORT_SCRIPT), str(onnx_path), "--providers", ",".join(kinds),
           "--batches", ",".join(map(str, plan.batches)), "--seconds",
           str(plan.seconds_per_batch), "--threads", str(threads), "--cache", str(cache)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              check=True)
    except subprocess.TimeoutExpired:
        return {"providers": {k: {"available": False, "reason": f"over {timeout_s:.0f} s"}
                              for k in kinds}}
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{ORT_SCRIPT.name} failed: {exc.stderr[-2000:]}") from exc
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _batch1_s(raw: dict[str, Any]) -> float | None:
    for entry in raw.get("providers", {}).values():
        row = entry.get("by_batch_size", {}).get("1")
        if entry.get("available") and row:
            return float(row["batch_ms_p50"]) / 1000.0
    return None


def _could_feed(run: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any] | None:
    """Sessions with this run's demand that the raw model could feed at its batch mix."""
    tri = run.get("triton")
    table = next((e["by_batch_size"] for e in raw.get("providers", {}).values()
                  if e.get("available")), None)
    if not tri or not tri["execution_count"] or not table:
        return None
    sizes = sorted(int(b) for b in table)
    busy = 0.0
    for b, count in tri["batch_sizes"].items():
        nearest = min(sizes, key=lambda s: abs(s - int(b)))  # batches are measured at powers
        busy += count * float(table[str(nearest)]["batch_ms_p50"]) / 1000.0 * int(b) / nearest
    samples = sum(int(b) * c for b, c in tri["batch_sizes"].items())
    achieved = tri["inference_count"] / run["window_s"]
    ceiling = samples / busy if busy else None
    return {"raw_samples_per_s_at_this_batch_mix": ceiling and round(ceiling, 1),
            "stack_samples_per_s": round(achieved, 2),
            "sessions_the_model_could_feed": int(ceiling / (achieved / run["n"]))
            if ceiling and achieved else None}


async def run_stack(plan: Plan, repository: Path, model: BenchModel, root: Path,
                    latency_prior_s: float, deadline: float, ort_threads: int
                    ) -> tuple[dict[str, Any], dict[int, RunSamples]]:
    from arena_server.launcher import LocalArenaServer
    from orchestrator.triton.launcher import LocalTriton

    opts = Options(models=[plan.model], n_by_model={plan.model: list(plan.sessions)},
                   designs=["stack"], duration_s=plan.duration_s, warmup_s=plan.warmup_s,
                   camera_size=plan.camera_size, ort_threads=ort_threads,
                   latency_prior_by_model={plan.model: latency_prior_s})
    runs: list[dict[str, Any]] = []
    samples: dict[int, RunSamples] = {}
    skipped: list[int] = []
    triton = LocalTriton(repository, work_dir=root / "triton", ort_threads=ort_threads)
    try:
        with LocalArenaServer() as arena:
            await asyncio.to_thread(triton.start, 300.0)
            for n in plan.sessions:
                # A run needs its start-up (robots join, first chunks), warm-up and window.
                if time.monotonic() + plan.duration_s + plan.warmup_s + 10 + 0.3 * n > deadline:
                    skipped.append(n)
                    continue
                try:
                    result, run_samples = await run_one("stack", model, n, arena, triton, opts)
                except Exception as exc:
                    log.exception("stack N=%d failed", n)
                    result = {"design": "stack", "n": n, "ok": False, "holds_rate": False,
                              "fell_over": True, "error": f"{type(exc).__name__}: {exc}"}
                    run_samples = RunSamples([], [], [])
                runs.append(result)
                samples[n] = run_samples
                log.warning("stack N=%d: rate min %s Hz, jitter p99 %s ms, avg batch %s", n,
                            result.get("achieved_hz", {}).get("min"),
                            result.get("publish_jitter_ms", {}).get("p99"),
                            (result.get("triton") or {}).get("avg_batch_size"))
                if result.get("fell_over"):
                    skipped += [m for m in plan.sessions if m > n]
                    break
            info = triton.info()
    finally:
        triton.close()
    return {"model": model.describe(), "runs": runs, "skipped_n": skipped,
            "figure_of_merit": figure_of_merit(runs), "local_triton": info,
            "latency_prior_s": round(latency_prior_s, 3)}, samples


def plot_raw(raw: dict[str, Any], out: Path) -> Path:
    from bench.comparison.report import plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, entry in raw.get("providers", {}).items():
        if not entry.get("available"):
            continue
        table = entry["by_batch_size"]
        xs = sorted(int(b) for b in table)
        ax.plot(xs, [table[str(b)]["samples_per_s"] for b in xs], marker="o", label=kind)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("samples / s (raw ONNX Runtime)")
    ax.grid(alpha=0.3)
    ax.legend()
    path = out / "gpu_raw_onnxruntime.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


async def bench(plan: Plan, out: Path, budget_s: float, ort_threads: int,
                plots: bool) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + budget_s
    report: dict[str, Any] = {"benchmark": "GPU run: raw ONNX Runtime ceiling and the full "
                                            "stack with the default ACT (issue 14)",
                              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "machine": {**machine(), "gpu": gpu_description() or None},
                              "plan": asdict(plan), "budget_s": budget_s}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        root = Path(tmp)
        from bench.comparison.models import prepare_models

        t0 = time.monotonic()
        repository, models = await asyncio.to_thread(prepare_models, [plan.model], root)
        model = models[plan.model]
        report["export_s"] = round(time.monotonic() - t0, 1)
        fast = tuple(k for k in plan.providers if not k.startswith("tensorrt"))
        raw = raw_onnxruntime(model.onnx_path, fast, plan, ort_threads, root / "trt",
                              max(30.0, deadline - time.monotonic()))
        # As an operator would set ORCHESTRATOR_LATENCY_PRIOR_S (see bench/README.md).
        prior = max(0.1, 4.0 * (_batch1_s(raw) or 0.025))
        stack, samples = await run_stack(plan, repository, model, root, prior, deadline,
                                         ort_threads)
        for run in stack["runs"]:
            run["raw_ceiling"] = _could_feed(run, raw)
        # TensorRT last: its engine build is the slowest part; it gets what time is left.
        slow = tuple(k for k in plan.providers if k.startswith("tensorrt"))
        left = deadline - time.monotonic()
        if slow and left > 60:
            extra = raw_onnxruntime(model.onnx_path, slow, plan, ort_threads, root / "trt",
                                    left - 10)
            raw["providers"].update(extra.get("providers", {}))
        elif slow:
            raw["providers"].update({k: {"available": False, "reason": "time budget spent"}
                                     for k in slow})
    report["raw_onnxruntime"] = raw
    report["stack"] = stack
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(report, indent=2))
    if plots:
        from bench.comparison.report import plot_model

        report["plots"] = [str(plot_raw(raw, out))] + [
            str(p) for p in plot_model(plan.model, stack, {"stack": samples}, out,
                                       stem="gpu_stack")]
        (out / "gpu.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="dry run: tiny ACT on CPU, N=1,2")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run")
    p.add_argument("--ort-threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    plan = CPU_PLAN if args.cpu else GPU_PLAN
    report = asyncio.run(bench(plan, args.out, args.budget, args.ort_threads,
                               not args.no_plots))
    for kind, entry in report["raw_onnxruntime"]["providers"].items():
        rows = entry.get("by_batch_size", {})
        shown = ", ".join(f"b{b} {r['samples_per_s']}/s x{r['gain_vs_batch1']}"
                          for b, r in rows.items()) or entry.get("reason", "")
        print(f"raw ONNX Runtime {kind}: {shown}")
    merit = report["stack"]["figure_of_merit"]
    print(f"stack: largest N holding the rate with p99 jitter < 5 ms and no underruns: "
          f"{merit['max_n']} (rate held up to N={merit['max_n_rate_held']}); skipped N "
          f"{report['stack']['skipped_n']}; {report['elapsed_s']} s; wrote "
          f"{args.out / 'gpu.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
