"""Cost and smoothness of the pure control core, per blend mode.

    python -m bench.control_bench [--ticks 3000] [--rate 30] [--latency 0.08]

Drives one ControlCore with a simulated model whose chunks follow a smooth trajectory plus
a per-chunk offset (as two observations of the same scene give slightly different
chunks), answering after --latency seconds. Reports the CPU time of on_tick/on_chunk and,
per blend, the largest and p99 change between consecutive commands (the jumps the blend
lets through) and the mean error against the trajectory. Writes
bench/results/control.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.control import ControlCore, TickClock

RESULTS = Path(__file__).parent / "results" / "control.json"
H = 100
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def trajectory(ticks: np.ndarray, rate: float) -> np.ndarray:
    t = ticks[:, None] / rate
    phase = np.arange(len(JOINTS))[None, :]
    return 50.0 + 40.0 * np.sin(2 * np.pi * 0.25 * t + phase)


def run(blend: str, ticks: int, rate: float, latency: float, offset: float,
        replan_every: int | None) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    core = ControlCore.create(JOINTS, H, rate, blend=blend,  # type: ignore[arg-type]
                              replan_every=replan_every, max_step=None)
    clock = TickClock(0.0, rate)
    pending: list[tuple[float, int]] = []
    published: dict[int, np.ndarray] = {}
    tick_cost: list[float] = []
    chunk_cost: list[float] = []
    for k in range(ticks):
        now = clock.deadline(k)
        while pending and pending[0][0] <= now:
            _, k_obs = pending.pop(0)
            chunk = trajectory(np.arange(k_obs, k_obs + H), rate) + rng.normal(0, offset, 6)
            start = time.perf_counter()
            core.on_chunk(chunk, k_obs, k - 1, latency_s=latency)
            chunk_cost.append(time.perf_counter() - start)
        start = time.perf_counter()
        decision = core.on_tick(k, now, True)
        tick_cost.append(time.perf_counter() - start)
        if decision.command is not None:
            published[k] = decision.command
        if decision.request_inference:
            pending.append((now + latency, k))
    keys = sorted(published)
    values = np.array([published[k] for k in keys])
    consecutive = np.diff(np.array(keys)) == 1
    steps = np.abs(np.diff(values, axis=0))[consecutive].max(axis=1)
    error = np.abs(values - trajectory(np.array(keys), rate)).mean()
    stats = core.stats()
    return {
        "blend": blend,
        "replan_every": replan_every,
        "on_tick_us_p50": float(np.percentile(tick_cost, 50) * 1e6),
        "on_tick_us_p99": float(np.percentile(tick_cost, 99) * 1e6),
        "on_chunk_us_p50": float(np.percentile(chunk_cost, 50) * 1e6) if chunk_cost else None,
        "max_step": float(steps.max()),
        "p99_step": float(np.percentile(steps, 99)),
        "mean_abs_error": float(error),
        "requests": stats.requests,
        "underruns": stats.underruns,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--latency", type=float, default=0.08)
    parser.add_argument("--offset", type=float, default=3.0, help="per-chunk offset std")
    args = parser.parse_args()
    rows = [
        run(blend, args.ticks, args.rate, args.latency, args.offset, every)
        for blend in ("replace", "crossfade", "ensemble")
        for every in (None, 1)
    ]
    result = {"machine": platform.platform(), "ticks": args.ticks, "rate": args.rate,
              "latency_s": args.latency, "offset": args.offset, "chunk_size": H, "runs": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
