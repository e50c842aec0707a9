"""The fleet registry's full read: one batch read against a read per record.

    python -m bench.registry_bench [--sessions 1,16,64] [--rounds 50]

``Registry.all`` runs on every create, every listing and every second in each API
process's refresh. A local Ray instance (loopback, as the tests run it) holds N records
of a realistic size; the two reads alternate, round by round, in the same run. Writes
bench/results/registry.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray

from orchestrator.fleet.registry import Registry
from orchestrator.fleet.worker import record_for
from orchestrator.sessions.spec import SessionSpec

RESULTS = Path(__file__).parent / "results" / "registry.json"


def measure(registry: Registry, n: int, rounds: int) -> dict[str, Any]:
    for record in registry.all():
        registry.delete(record.session_id)
    for i in range(n):
        spec = SessionSpec(session_id=f"s{i:03d}", policy_path="tiny_act",
                           camera_names=("front", "wrist"), workspace_id="ws")
        registry.put(record_for(spec, i % 2))
    times: dict[str, list[float]] = {"batch": [], "one_by_one": []}
    for _ in range(rounds):
        for name, read in (("batch", registry.all), ("one_by_one", registry.all_one_by_one)):
            began = time.perf_counter()
            records = read()
            times[name].append((time.perf_counter() - began) * 1e3)
            assert len(records) == n
    out: dict[str, Any] = {"sessions": n}
    for name, ms in times.items():
        out[name] = {"p50_ms": round(float(np.median(ms)), 3),
                     "p99_ms": round(float(np.percentile(ms, 99)), 3)}
    out["one_by_one_over_batch_p50"] = round(
        out["one_by_one"]["p50_ms"] / max(out["batch"]["p50_ms"], 1e-6), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,16,64")
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
             logging_level="ERROR", namespace="registry-bench")
    try:
        registry = Registry("registry-bench")
        runs = [measure(registry, int(n), args.rounds) for n in args.sessions.split(",")]
    finally:
        ray.shutdown()
    result = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "ray": ray.__version__},
              "rounds": args.rounds, "runs": runs}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    for run in runs:
        print(f"N={run['sessions']:3d}  batch p50 {run['batch']['p50_ms']:.2f} ms "
              f"p99 {run['batch']['p99_ms']:.2f}  one by one p50 {run['one_by_one']['p50_ms']:.2f}"
              f" ms p99 {run['one_by_one']['p99_ms']:.2f}  "
              f"ratio {run['one_by_one_over_batch_p50']}x")


if __name__ == "__main__":
    main()
