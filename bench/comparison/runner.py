"""Run the comparison: for each model and N, each design on the same rooms, robots, machine.

One local Triton (serving every model) and one room server are started once for the whole
run. For each N the designs run one after the other (stack, then the baselines), so slow
drifts in the shared machine's load hit them alike. A design that falls over at some N
(median achieved rate under 80 % of the target, or sessions that never start flowing) is
not run at larger N.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from arena_server.launcher import LocalArenaServer
from orchestrator.triton.client import ModelStatistics
from orchestrator.triton.launcher import LocalTriton

from . import workers as _workers  # noqa: F401  (registers the session-worker designs)
from .drivers import DESIGNS as DRIVERS
from .drivers import DesignContext, Driver
from .fleet import Fleet, FleetConfig
from .measure import CpuMeter, GcPauses, ThreadCpu, percentiles, session_figures
from .models import BenchModel, ort_ceiling, prepare_models
from .probe import TimerProbe

log = logging.getLogger(__name__)

DESIGNS = tuple(DRIVERS)
# What a run without --designs compares, side by side.
DEFAULT_DESIGNS = ("stack_per_session", "stack", "workers_2", "baseline_onnxruntime",
                   "baseline_pytorch")
JITTER_LIMIT_MS = 5.0
HOLD_FRACTION = 0.95  # achieved/target rate that counts as holding the control rate
FALL_FRACTION = 0.80  # below this a design has fallen over: larger N are not run
# This thread's nice value at start: what robots are spawned at, and what a run that raised
# the thread's priority (an in-process orchestrator with control_nice) leaves behind it.
BENCH_NICE = os.getpriority(os.PRIO_PROCESS, 0)


@dataclass
class Options:
    models: list[str] = field(default_factory=lambda: ["small", "default"])
    n_by_model: dict[str, list[int]] = field(default_factory=lambda: {
        "small": [1, 2, 4, 8, 16, 32], "default": [1, 2, 4], "tiny": [1]})
    designs: list[str] = field(default_factory=lambda: list(DEFAULT_DESIGNS))
    pytorch_max_n: int = 8
    duration_s: float = 10.0
    duration_by_model: dict[str, float] = field(default_factory=dict)  # overrides duration_s
    warmup_s: float = 3.0
    camera_fps: float = 10.0
    camera_size: tuple[int, int] = (128, 96)  # width, height
    joint_rate: float = 10.0
    rate_hz: float | None = None  # None: the model's fps
    stale_after_s: float | None = None  # the stack's; None: Settings default (0.5 s)
    ort_threads: int = 1
    flow_timeout_s: float = 45.0
    ceiling_seconds: float = 2.0  # ONNX Runtime timing per batch size
    # The loop the orchestrator under test runs on: "asyncio" as `make run`, "uvloop" as
    # `python -m orchestrator` (uvicorn picks it) and the Ray workers.
    event_loop: str = "asyncio"
    # The stack's latency prior per model (set by run_model from a batch-1 measurement).
    latency_prior_by_model: dict[str, float] = field(default_factory=dict)


@dataclass
class RunSamples:
    jitter_ms: list[float]
    obs_to_command_ms: list[float]
    inference_ms: list[float]


def _stats_delta(before: ModelStatistics | None, after: ModelStatistics | None
                 ) -> dict[str, Any] | None:
    if before is None or after is None:
        return None
    sizes = {b: c - before.batch_sizes.get(b, 0) for b, c in after.batch_sizes.items()
             if c - before.batch_sizes.get(b, 0) > 0}
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    return {"inference_count": inferences, "execution_count": executions,
            "avg_batch_size": round(inferences / executions, 2) if executions else 0.0,
            "batch_sizes": {str(k): v for k, v in sorted(sizes.items())}}


def _driver(design: str, model: BenchModel, n: int, arena: LocalArenaServer,
            triton: LocalTriton, rate: float, opts: Options) -> Driver:
    return DRIVERS[design](DesignContext(
        model=model, n=n, arena_url=arena.base_url, triton_url=triton.grpc_url, rate=rate,
        latency_prior_s=opts.latency_prior_by_model.get(model.size, 0.1),
        ort_threads=opts.ort_threads, stale_after_s=opts.stale_after_s))


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items()}


def control_plane(ticks: int, threads: dict[str, float], tick_cpu: dict[str, float],
                  sched: dict[str, float], workers_s: dict[str, float] | None = None
                  ) -> dict[str, Any]:
    """CPU per session-tick (ms): the tick path (decision, safety, hand-off; the send), the
    event-loop thread as a whole (ticks plus joint, video packet and HTTP handling) and,
    apart, the process's other threads (video decoding, frame conversion). With session
    workers, the workers' processes as a whole (``workers_s``: CPU seconds of each)."""
    def per_tick(seconds: float | None) -> float | None:
        return None if seconds is None or ticks <= 0 else round(seconds / ticks * 1000, 4)

    out: dict[str, Any] = {
        "session_ticks": ticks,
        "tick_ms_per_session_tick": per_tick(tick_cpu.get("tick_s")),
        "send_ms_per_session_tick": per_tick(tick_cpu.get("send_s")),
        "event_loop_thread_ms_per_session_tick": per_tick(threads.get("main_s")),
        "other_threads_ms_per_session_tick": per_tick(threads.get("other_threads_s")),
        "event_loop_thread_cores": round(threads["main_s"] / threads["wall_s"], 3),
        "other_threads_cores": round(threads["other_threads_s"] / threads["wall_s"], 3),
    }
    if "main_runqueue_wait_s" in threads:
        # Ready to run with no CPU free: jitter the machine adds, whatever the code does.
        out["event_loop_thread_runqueue_wait_share"] = round(
            threads["main_runqueue_wait_s"] / threads["wall_s"], 3)
    if workers_s:
        out["workers_ms_per_session_tick"] = per_tick(sum(workers_s.values()))
        out["workers_cores"] = round(sum(workers_s.values()) / threads["wall_s"], 3)
    if sched:
        out["scheduler"] = {
            "passes": int(sched["passes"]),
            "missed_passes": int(sched["missed_passes"]),
            "pass_cpu_ms_per_session_tick": round(
                sched["pass_cpu_s"] / sched["member_ticks"] * 1000, 4)
            if sched["member_ticks"] else None}
    return out


async def run_one(design: str, model: BenchModel, n: int, arena: LocalArenaServer,
                  triton: LocalTriton, opts: Options) -> tuple[dict[str, Any], RunSamples]:
    rate = opts.rate_hz or model.contract.fps
    driver = _driver(design, model, n, arena, triton, rate, opts)
    width, height = opts.camera_size
    collector = GcPauses()
    probe = TimerProbe(rate)
    try:
        await driver.open()
        fleet = Fleet(FleetConfig(arena.base_url, driver.rooms(), opts.camera_fps, width,
                                  height, opts.joint_rate, nice=BENCH_NICE))
        try:
            await fleet.start()
            await driver.start()
            deadline = time.monotonic() + opts.flow_timeout_s + 2.0 * n
            await driver.sample()
            while not driver.flowing():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sessions not all publishing model commands after "
                                       f"{opts.flow_timeout_s + 2.0 * n:.0f} s")
                await asyncio.sleep(0.1)
                await driver.sample()
            await asyncio.sleep(opts.warmup_s)
            cpu = CpuMeter({"process_under_test": (os.getpid(), False),
                            "triton": (triton.pid, True),
                            "room_server": (arena.proc.pid if arena.proc else None, True),
                            "robots": (fleet.pid, True), **driver.cpu_groups()})
            await driver.sample()
            counters0, stats0 = driver.counters(), await driver.triton_statistics()
            tick_cpu0, sched0 = driver.control_cpu(), driver.scheduler_stats()
            threads = ThreadCpu()
            cpu.start()
            threads.start()
            collector.start()
            probe.start()  # from this (the loop's) thread: it takes the loop's priority
            t0 = time.monotonic()
            await asyncio.sleep(opts.duration_by_model.get(model.size, opts.duration_s))
            t1 = time.monotonic()
            cpu_use = cpu.stop()
            thread_use = threads.stop()
            gc_use = collector.stop()
            probe_use = probe.stop()
            tick_cpu = _delta(driver.control_cpu(), tick_cpu0)
            sched = _delta(driver.scheduler_stats(), sched0)
            await driver.sample()
            counters1, stats1 = driver.counters(), await driver.triton_statistics()
            await driver.stop()
            queries = [q for i, r in enumerate(driver.recorders)
                       for q in r.frame_queries(i, t0, t1)]
            records = await fleet.collect(queries)
        finally:
            collector.detach()
            probe.halt()
            await fleet.close()
        inferences = driver.inferences()
    finally:
        await driver.close()
        # The next run starts from the bench's own priority (raising it back is never refused).
        tid = threading.get_native_id()
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))  # ditto, from real time
        os.setpriority(os.PRIO_PROCESS, tid, BENCH_NICE)

    figures = [session_figures(r, robot, t0, t1, rate)
               for r, robot in zip(driver.recorders, records, strict=True)]
    jitter = [x for f in figures for x in f.jitter_ms]
    # Designs whose loops run in other processes give no publish times: judged at the robot.
    jitter_source = "publish" if jitter else "arrival"
    if not jitter:
        jitter = [x for f in figures for x in f.arrival_jitter_ms]
    latency = [x for f in figures for x in f.obs_to_command_ms]
    inference_ms = [s * 1000.0 for done, s in inferences if t0 <= done <= t1]
    achieved = [f.achieved_hz for f in figures]
    delta = {k: counters1.get(k, 0) - counters0.get(k, 0) for k in counters1}
    span = t1 - t0
    jitter_p = percentiles(jitter)
    holds = min(achieved) >= HOLD_FRACTION * rate
    ok = bool(holds and jitter_p["p99"] is not None and float(jitter_p["p99"]) < JITTER_LIMIT_MS
              and delta.get("underruns", 0) == 0 and delta.get("missed_ticks", 0) == 0)
    result: dict[str, Any] = {
        "design": design, "n": n, "rate_hz": rate, "window_s": round(span, 2),
        "ok": ok, "holds_rate": holds,
        "fell_over": float(np.median(achieved)) < FALL_FRACTION * rate,
        "achieved_hz": {"min": round(min(achieved), 2),
                        "median": round(float(np.median(achieved)), 2)},
        "publish_jitter_ms": jitter_p,
        "jitter_source": jitter_source,
        "periods_over_5ms": int(sum(1 for x in jitter if x >= JITTER_LIMIT_MS)),
        "arrival_jitter_ms": percentiles(x for f in figures for x in f.arrival_jitter_ms),
        "obs_to_command_ms": percentiles(latency),
        "inference_ms": percentiles(inference_ms),
        "inference_rate_per_s": round(len(inference_ms) / span, 2),
        "plan_underruns": delta.get("underruns", 0),
        "missed_ticks": delta.get("missed_ticks", 0),
        "counters": delta,
        "triton": _stats_delta(stats0, stats1),
        "cpu_cores": cpu_use,
        "control_plane": control_plane(delta.get("ticks", 0), thread_use, tick_cpu, sched,
                                       {k: cpu_use[k] * span for k in driver.cpu_groups()
                                        if k in cpu_use}),
        "gc_on_event_loop_thread": gc_use,
        "timer_thread_probe": probe_use,
        "sessions": [f.summary for f in figures],
    }
    return result, RunSamples(jitter, latency, inference_ms)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(), "gpu": None, "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": {p: _version(p) for p in ("onnxruntime", "torch", "lerobot", "aiortc",
                                              "nvidia-pytriton")},
        "note": "shared machine: other processes run beside the bench; see cpu_cores",
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def figure_of_merit(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Largest N that met the criterion, every smaller N meeting it too."""
    strict = held = 0
    strict_done = held_done = False
    for run in sorted(runs, key=lambda r: int(r["n"])):
        held_done = held_done or not run["holds_rate"]
        strict_done = strict_done or not run["ok"]
        held = held if held_done else int(run["n"])
        strict = strict if strict_done else int(run["n"])
    return {"max_n": strict, "max_n_rate_held": held,
            "criterion": f"every session at >= {HOLD_FRACTION:.0%} of the control rate, "
                         f"publish jitter p99 < {JITTER_LIMIT_MS} ms, no plan underruns "
                         "and no missed ticks in the window"}


def add_ceiling(model: BenchModel, runs: list[dict[str, Any]], threads: int,
                seconds: float) -> dict[str, Any]:
    """ONNX Runtime in-process at every batch size Triton formed; per stack run, the
    throughput that batch mix allows and the fraction the stack used."""
    sizes = sorted({int(b) for r in runs if r.get("triton") for b in r["triton"]["batch_sizes"]})
    table = ort_ceiling(model, sizes or [1], threads, seconds)
    for run in runs:
        tri = run.get("triton")
        if not tri or not tri["execution_count"]:
            continue
        busy = sum(count * table[b]["batch_ms_p50"] / 1000.0
                   for b, count in tri["batch_sizes"].items() if b in table)
        samples = sum(int(b) * count for b, count in tri["batch_sizes"].items())
        ceiling = samples / busy if busy > 0 else None
        achieved = tri["inference_count"] / run["window_s"]
        per_session = achieved / run["n"]
        run["ceiling"] = {
            "ort_samples_per_s_at_this_batch_mix": None if ceiling is None else round(ceiling, 2),
            "stack_samples_per_s": round(achieved, 2),
            "fraction": None if not ceiling else round(achieved / ceiling, 4),
            # How many sessions with this run's demand the model alone could feed.
            "sessions_the_model_could_feed": None if not (ceiling and per_session)
            else int(ceiling / per_session),
        }
    return {"ort_threads": threads, "by_batch_size": table}


async def run_model(model: BenchModel, arena: LocalArenaServer, triton: LocalTriton,
                    opts: Options, on_run: Callable[[str, dict[str, Any]], None] | None
                    ) -> tuple[dict[str, Any], dict[str, dict[int, RunSamples]]]:
    runs: list[dict[str, Any]] = []
    fallen: set[str] = set()
    samples: dict[str, dict[int, RunSamples]] = {}
    # As an operator would set ORCHESTRATOR_LATENCY_PRIOR_S for a slow model: the default
    # 0.1 s is far below the default ACT's CPU latency, and the loop trusts its own
    # measurement only after 5 chunks (15 s of a 100-action chunk at 30 Hz).
    batch1 = ort_ceiling(model, [1], opts.ort_threads, min(1.0, opts.ceiling_seconds)
                         )["1"]["batch_ms_p50"] / 1000.0
    prior = opts.latency_prior_by_model.setdefault(model.size, max(0.1, 4.0 * batch1))
    for n in opts.n_by_model[model.size]:
        for design in opts.designs:
            if design in fallen or (design == "baseline_pytorch" and n > opts.pytorch_max_n):
                continue
            try:
                result, run_samples = await run_one(design, model, n, arena, triton, opts)
            except Exception as exc:
                log.exception("%s %s N=%d failed", model.size, design, n)
                result = {"design": design, "n": n, "ok": False, "holds_rate": False,
                          "fell_over": True, "error": f"{type(exc).__name__}: {exc}"}
                run_samples = RunSamples([], [], [])
            runs.append(result)
            samples.setdefault(design, {})[n] = run_samples
            if result["fell_over"]:
                fallen.add(design)
            if on_run is not None:
                on_run(model.size, result)
    ceiling = add_ceiling(model, runs, opts.ort_threads, opts.ceiling_seconds)
    merit = {d: figure_of_merit([r for r in runs if r["design"] == d]) for d in opts.designs}
    return {"model": model.describe(), "runs": runs, "figure_of_merit": merit,
            "ceiling": ceiling, "stack_latency_prior_s": round(prior, 3),
            "ort_batch1_ms_before_runs": round(batch1 * 1000.0, 2)}, samples


async def run(opts: Options, on_run: Callable[[str, dict[str, Any]], None] | None = None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Returns (report, samples): samples[model][design][n] = RunSamples, for the plots."""
    report: dict[str, Any] = {
        "benchmark": "this stack (shared tick scheduler), its earlier per-session timers, and "
                     "the per-session design (issues 8, 12)",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "settings": {
            "designs": opts.designs, "n_by_model": {m: opts.n_by_model[m] for m in opts.models},
            "pytorch_max_n": opts.pytorch_max_n, "duration_s": opts.duration_s,
            "duration_by_model": opts.duration_by_model,
            "warmup_s": opts.warmup_s, "camera_fps": opts.camera_fps,
            "event_loop": opts.event_loop,
            "switch_interval_ms": round(sys.getswitchinterval() * 1000.0, 3),
            "camera_size_wh": list(opts.camera_size), "robot_joint_rate_hz": opts.joint_rate,
            "ort_threads": opts.ort_threads, "triton_instances": 1,
            "stack_stale_after_s": opts.stale_after_s,
            "stack_session_settings": "orchestrator Settings defaults (crossfade, margin 3 "
                                      "ticks, max_step 10), triton_timeout_s 10, "
                                      "latency_prior_s per model (see stack_latency_prior_s)",
        },
        "models": {},
    }
    samples: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        root = Path(tmp)
        repository, models = await asyncio.to_thread(prepare_models, opts.models, root)
        triton = LocalTriton(repository, work_dir=root / "triton", ort_threads=opts.ort_threads)
        try:
            with LocalArenaServer() as arena:
                await asyncio.to_thread(triton.start, 180.0)
                for size, model in models.items():
                    report["models"][size], samples[size] = await run_model(
                        model, arena, triton, opts, on_run)
        finally:
            triton.close()
    return report, samples
