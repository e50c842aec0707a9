"""Soak: many session lifecycles, then many sessions running for minutes, all for real.

    .venv/bin/python -m bench.soak [--cycles 200] [--sessions 16] [--minutes 10]

Starts its own room server and local Triton (a tiny ACT-shaped ONNX model with the SO-100
joints), runs the orchestrator API in-process on uvicorn, and drives it over HTTP like a
client. Each session has its own simulated robot (joints, WebRTC camera).

1. ``--cycles`` sessions are created, started, driven until their robot got commands,
   stopped and deleted (``--parallel`` at a time).
2. ``--sessions`` sessions run together for ``--minutes``. Every command a session publishes
   is recorded (the bench wraps the loop's publish function: instrumentation only) and
   compared with what its robot received, in order: lost and out-of-order commands.

Resources (asyncio tasks, open fds and sockets, threads, RSS, Python heap blocks and
gc-tracked objects) are taken at the start (idle,
after one warm-up cycle), after the cycles, and at the end, each time with no session and
no robot alive, so they compare like with like; during the soak they are sampled too
(then they include the robots and the bench's own records of every command).
Writes ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import json
import logging
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from arena_server.launcher import LocalArenaServer
from orchestrator.settings import Settings
from orchestrator.triton.launcher import LocalTriton
from sim_robot.robot import SimRobot
from tests.support.orchestrator import Orchestrator, run_orchestrator, wait_for
from tests.support.policies import write_so100_model
from tests.support.rooms import full_commands, robot_for

MODEL = "so100_soak"
WINDOW = 200  # commands searched ahead/behind when aligning the two streams
RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"


def resources() -> dict[str, Any]:
    gc.collect()
    proc = psutil.Process()
    return {
        "asyncio_tasks": len(asyncio.all_tasks()),
        "open_fds": proc.num_fds(),
        "sockets": len(proc.net_connections(kind="all")),
        "threads": threading.active_count(),
        "os_threads": proc.num_threads(),
        "rss_mib": round(proc.memory_info().rss / 2**20, 1),
        # Python's own heap: RSS keeps freed memory (allocator arenas, codec buffers), so
        # growth of live Python objects shows here, not there.
        "py_allocated_blocks": sys.getallocatedblocks(),
        "gc_objects": len(gc.get_objects()),
    }


async def settled(max_wait_s: float = 15.0) -> dict[str, Any]:
    """Resources once closing sockets and exiting tasks are gone (two equal samples)."""
    last = resources()
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        now = resources()
        if now == last:
            break
        last = now
    return last


def body(sid: str, arena: LocalArenaServer) -> dict[str, Any]:
    return {"session_id": sid, "policy_path": MODEL, "camera_names": ["front"],
            "arena_server_url": arena.base_url}


# -- 1. lifecycles ----------------------------------------------------------------------
async def one_cycle(orch: Orchestrator, arena: LocalArenaServer) -> float:
    started = time.monotonic()
    sid = f"cycle-{uuid.uuid4().hex[:8]}"
    created = await orch.create_session(**body(sid, arena))
    try:
        async with robot_for(created, arena.base_url) as robot:
            response = await orch.http.post(f"/sessions/{sid}/start")
            assert response.status_code == 200, response.text
            await wait_for(lambda: len(robot.received) >= 3, 60, f"commands for {sid}")
            response = await orch.http.post(f"/sessions/{sid}/stop")
            assert response.status_code == 200, response.text
    finally:
        response = await orch.http.delete(f"/sessions/{sid}")
        assert response.status_code == 200, response.text
    return time.monotonic() - started


async def cycles(orch: Orchestrator, arena: LocalArenaServer, total: int, parallel: int
                 ) -> dict[str, Any]:
    gate = asyncio.Semaphore(parallel)
    durations: list[float] = []
    failures: list[str] = []

    async def guarded() -> None:
        async with gate:
            try:
                durations.append(await one_cycle(orch, arena))
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}"[:300])

    started = time.monotonic()
    await asyncio.gather(*(guarded() for _ in range(total)))
    return {
        "cycles": total, "parallel": parallel, "ok": len(durations), "failed": len(failures),
        "failures": failures[:10], "wall_s": round(time.monotonic() - started, 1),
        "cycle_s": _summary(durations),
        "sessions_left": len(orch.manager.sessions()),
    }


# -- 2. soak ----------------------------------------------------------------------------
def command_key(values: Mapping[str, float]) -> int:
    """A compact fingerprint of one full command (the bench keeps one per command sent, so
    its own memory stays small beside the orchestrator's)."""
    return hash(json.dumps(dict(values), sort_keys=True))


def record_publishes(orch: Orchestrator, sid: str) -> list[int]:
    """Keep every command the session loop sent (through its publish observers)."""
    sent: list[int] = []

    def recording(values: Mapping[str, float], at: float, ok: bool, source: object) -> None:
        if ok:
            sent.append(command_key(values))

    orch.manager.get(sid).loop.publish_observers.append(recording)
    return sent


def compare(sent: list[int], robot: SimRobot) -> dict[str, int]:
    """Align what the robot got with what was sent. The server forwards only changed
    joints, so a command equal to the previous one never arrives: compare full commands."""
    keys: list[int] = []
    for sent_key in sent:
        if not keys or sent_key != keys[-1]:
            keys.append(sent_key)
    got = full_commands(list(robot.received))
    lost = out_of_order = unknown = 0
    cursor = 0  # the next expected command
    for command in got:
        key = command_key(command)
        # The same values may recur (joints resting on a limit): match the nearest one ahead.
        ahead = next((j for j in range(cursor, min(len(keys), cursor + WINDOW))
                      if keys[j] == key), None)
        if ahead is not None:
            lost += ahead - cursor
            cursor = ahead + 1
        elif key in keys[max(0, cursor - WINDOW):cursor]:
            out_of_order += 1
        else:
            unknown += 1
    lost += len(keys) - cursor
    return {"sent": len(sent), "sent_distinct": len(keys), "received": len(got),
            "lost": lost, "out_of_order": out_of_order, "unknown": unknown}


async def soak(orch: Orchestrator, arena: LocalArenaServer, count: int, minutes: float,
               sample_every_s: float) -> dict[str, Any]:
    sids = [f"soak-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    samples: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        robots: dict[str, SimRobot] = {}
        sent: dict[str, list[int]] = {}
        for sid in sids:
            created = await orch.create_session(**body(sid, arena))
            stack.push_async_callback(orch.http.delete, f"/sessions/{sid}")
            robots[sid] = await stack.enter_async_context(robot_for(created, arena.base_url))
            sent[sid] = record_publishes(orch, sid)
        for sid in sids:
            assert (await orch.http.post(f"/sessions/{sid}/start")).status_code == 200
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < minutes * 60:
            await asyncio.sleep(min(sample_every_s, max(0.0, minutes * 60 - elapsed)))
            samples.append({"t_s": round(time.monotonic() - started, 1), **resources(),
                            "commands": sum(len(r.received) for r in robots.values())})
        duration = time.monotonic() - started
        for sid in sids:
            await orch.http.post(f"/sessions/{sid}/stop")
        await asyncio.sleep(1.0)  # the last commands land
        per_session = {}
        for sid in sids:
            stats = (await orch.status(sid))["stats"]
            arrivals = [c.arrived_at for c in robots[sid].received]
            gaps = [b - a for a, b in itertools.pairwise(arrivals)]
            per_session[sid] = {
                **compare(sent[sid], robots[sid]),
                "commands_per_s": round(len(arrivals) / duration, 2),
                "arrival_gap_ms": _summary([g * 1000 for g in gaps]),
                "underruns": stats["plan_underruns"], "errors": stats["errors_by_kind"],
                "inference_count": stats["inference_count"],
                "inference_latency_ms": stats["inference_latency_ms"],
            }
    totals = {k: sum(s[k] for s in per_session.values())
              for k in ("sent", "received", "lost", "out_of_order", "unknown", "underruns")}
    return {"sessions": count, "minutes": round(duration / 60, 2), "totals": totals,
            "per_session": per_session, "samples": samples}


def _summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    return {"n": len(values), "p50": round(statistics.median(ordered), 3),
            "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            "max": round(ordered[-1], 3)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        repo = Path(tmp) / "models"
        write_so100_model(repo, MODEL)
        with (LocalArenaServer() as arena,
              LocalTriton(repo, work_dir=Path(tmp) / "triton") as triton):
            settings = Settings(triton_url=triton.grpc_url, triton_timeout_s=5.0,
                                max_sessions=max(64, args.sessions + args.parallel))
            async with run_orchestrator(settings) as orch:
                # Warm-up (one batch): thread pools, channels, codecs, allocator arenas.
                await cycles(orch, arena, args.parallel, args.parallel)
                start = await settled()
                print(f"start: {start}", flush=True)
                cycled = await cycles(orch, arena, args.cycles, args.parallel)
                after_cycles = await settled()
                print(f"cycles: {cycled['ok']} ok, {cycled['failed']} failed in "
                      f"{cycled['wall_s']} s; {after_cycles}", flush=True)
                soaked = await soak(orch, arena, args.sessions, args.minutes, args.sample_s)
                end = await settled()
                print(f"soak totals: {soaked['totals']}; end: {end}", flush=True)
    growth = {k: round(end[k] - start[k], 1) for k in start}
    return {
        "bench": "soak", "machine": platform.platform(), "cpus": psutil.cpu_count(),
        "settings": vars(args), "resources": {"start": start, "after_cycles": after_cycles,
                                              "end": end, "growth": growth},
        "cycles": cycled, "soak": soaked,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--parallel", type=int, default=8, help="lifecycles at a time")
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for handler in logging.getLogger().handlers:  # the app's log ring lowers the root level
        handler.setLevel(logging.WARNING)
        # The tiny random model is clamped all the time; the counts are in the results.
        handler.addFilter(lambda record: "safety" not in record.getMessage())
    result = asyncio.run(main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli()
