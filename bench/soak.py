"""Soak that measures the orchestrator alone: its processes, sampled from outside.

    .venv/bin/python -m bench.soak [--sessions 16] [--minutes 30] [--cycles 100]

The orchestrator runs as its own process (``python -m orchestrator``, the production entry
point) against its own room server and local Triton (a tiny ACT-shaped ONNX model with the
SO-100 joints). The simulated robots, and their logs of every command received, run in
one more process (``bench.comparison.fleet``, as in ``python -m bench``), so nothing the
bench keeps lives in a measured process.

1. ``--cycles`` sessions are created, started, stopped and deleted over HTTP (``--parallel``
   at a time, no robot: the lifecycle's own leaks).
2. ``--sessions`` sessions, each with its robot (joints and a WebRTC camera), run for
   ``--minutes``. Every orchestrator process (the API's process and its descendants, the
   ``--pid`` processes and those whose command line holds ``--match``: session workers) is
   sampled every ``--sample-s``: RSS, fds, threads. The RSS slope is fitted after
   ``--warmup-min`` (MiB per 10 minutes).
3. Commands: per session, what its outbox sent (from the session's status) against what its
   robot received; the orchestrator's own counts of commands replaced, refused or failed.
4. Garbage collections in the window, per orchestrator process and generation, from its
   /metrics (``orchestrator_gc_pause_seconds``): how many, their total, how many took over
   10 / 50 / 100 ms (every session of that process waits for one).

``--explain`` also measures what one command costs an in-process robot's log (Python heap
blocks per command kept, and given back when the log is cleared): the growth the earlier
in-process soak saw. Writes ``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from arena_server.launcher import LocalArenaServer
from bench.comparison.fleet import Fleet, FleetConfig, RobotRooms
from bench.gc_scrape import gc_pauses, window
from orchestrator.triton.launcher import LocalTriton
from tests.support.arena import free_port
from tests.support.policies import write_so100_model
from tests.support.processes import stop_process

MODEL = "so100_soak"
RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"


# -- the measured processes --------------------------------------------------------------
class ApiProcess:
    """``python -m orchestrator`` in its own process (the environment is passed on, plus
    ``env``: e.g. ``ORCHESTRATOR_WORKERS``)."""

    def __init__(self, triton_url: str, arena_url: str, max_sessions: int,
                 env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "orchestrator", "--host", "127.0.0.1",
                        "--port", str(self.port), "--triton-url", triton_url,
                        "--arena-default-url", arena_url, "--max-sessions", str(max_sessions),
                        "--triton-timeout-s", "5", "--log-level", "WARNING"]
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_path

    async def start(self, timeout_s: float = 60.0) -> None:
        with self.log_path.open("ab") as log:  # its log, not the bench's console
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"orchestrator exited with {self.proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"orchestrator not healthy at {self.url} after {timeout_s} s")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        return stop_process(self.proc, 20)


def orchestrator_processes(api_pid: int, pids: list[int], match: list[str]
                           ) -> list[psutil.Process]:
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(api_pid)
        for p in [root, *root.children(recursive=True)]:
            found[p.pid] = p
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found[pid] = psutil.Process(pid)
    if match:
        for p in psutil.process_iter(["cmdline"]):
            line = " ".join(p.info["cmdline"] or [])
            # Not this process: its own command line holds the --match strings.
            if p.pid != os.getpid() and any(m in line for m in match):
                found[p.pid] = p
    return list(found.values())


def sample(procs: list[psutil.Process]) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for p in procs:
        with contextlib.suppress(psutil.Error), p.oneshot():
            per[str(p.pid)] = {"name": " ".join(p.cmdline()[:3])[:80],
                               "rss_mib": round(p.memory_info().rss / 2**20, 2),
                               "fds": p.num_fds(), "threads": p.num_threads()}
    return {"rss_mib": round(sum(v["rss_mib"] for v in per.values()), 2),
            "fds": sum(v["fds"] for v in per.values()),
            "threads": sum(v["threads"] for v in per.values()), "processes": per}


def slopes_by_process(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """The slope of each process seen in every sample after the warm-up (the API, each
    worker, and with workers Ray's own daemons, which are the API's descendants), by pid."""
    later = [s for s in samples if s["t_s"] >= warmup_s]
    if not later:
        return {}
    pids = set(later[0]["processes"]).intersection(*(s["processes"] for s in later))
    out = {}
    for pid in sorted(pids):
        series = [{"t_s": s["t_s"], "rss_mib": s["processes"][pid]["rss_mib"]} for s in later]
        out[pid] = {"name": later[0]["processes"][pid]["name"],
                    **slope_per_10min(series, warmup_s)}
    return out


def slope_per_10min(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """Least-squares RSS slope over the samples after the warm-up."""
    pts = [(s["t_s"], s["rss_mib"]) for s in samples if s["t_s"] >= warmup_s]
    if len(pts) < 3:
        return {"mib_per_10min": None, "samples": len(pts)}
    t, rss = np.array(pts).T
    k = float(np.polyfit(t, rss, 1)[0])
    return {"mib_per_10min": round(k * 600, 3), "samples": len(pts),
            "from_s": round(float(t[0]), 1), "rss_first_mib": float(rss[0]),
            "rss_last_mib": float(rss[-1]), "rss_max_mib": float(rss.max())}


# -- 1. lifecycles ------------------------------------------------------------------------
def body(sid: str, arena_url: str) -> dict[str, Any]:
    return {"session_id": sid, "policy_path": MODEL, "camera_names": ["front"],
            "arena_server_url": arena_url}


async def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.method} {response.request.url.path}: "
                           f"{response.status_code} {response.text[:200]}")
    out: dict[str, Any] = response.json()
    return out


async def cycles(http: httpx.AsyncClient, arena_url: str, total: int, parallel: int
                 ) -> dict[str, Any]:
    gate = asyncio.Semaphore(parallel)
    failures: list[str] = []

    async def one() -> None:
        sid = f"cycle-{uuid.uuid4().hex[:8]}"
        async with gate:
            try:
                await _ok(await http.post("/sessions", json=body(sid, arena_url)))
                await _ok(await http.post(f"/sessions/{sid}/start"))
                await _ok(await http.post(f"/sessions/{sid}/stop"))
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}"[:300])
            finally:
                with contextlib.suppress(httpx.HTTPError):
                    await http.delete(f"/sessions/{sid}")

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(total)))
    left = (await http.get("/sessions")).json()
    return {"cycles": total, "parallel": parallel, "failed": len(failures),
            "failures": failures[:10], "wall_s": round(time.monotonic() - started, 1),
            "sessions_left": len(left) if isinstance(left, list) else left}


# -- 2. soak ------------------------------------------------------------------------------
async def soak(http: httpx.AsyncClient, arena_url: str, args: argparse.Namespace,
               procs: Any) -> dict[str, Any]:
    sids = [f"soak-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(args.sessions)]
    rooms = []
    for sid in sids:
        c = await _ok(await http.post("/sessions", json=body(sid, arena_url)))
        rooms.append(RobotRooms(c["workspace_id"], c["joint_input_room_id"],
                                c["joint_output_room_id"], dict(c["camera_room_ids"])))
    fleet = Fleet(FleetConfig(arena_url, rooms, fps=args.camera_fps, width=64, height=48,
                              joint_rate=30.0))
    samples: list[dict[str, Any]] = []
    try:
        await fleet.start()
        for sid in sids:
            await _ok(await http.post(f"/sessions/{sid}/start"))
        started = time.monotonic()
        gc_before = gc_pauses((await http.get("/metrics")).text)
        total_s = args.minutes * 60
        while (elapsed := time.monotonic() - started) < total_s:
            await asyncio.sleep(min(args.sample_s, max(0.0, total_s - elapsed)))
            samples.append({"t_s": round(time.monotonic() - started, 1), **sample(procs())})
        duration = time.monotonic() - started
        gc_window = window(gc_before, gc_pauses((await http.get("/metrics")).text))
        for sid in sids:
            await _ok(await http.post(f"/sessions/{sid}/stop"))
        await asyncio.sleep(2.0)  # the last commands land
        statuses = [(await _ok(await http.get(f"/sessions/{sid}")))["stats"] for sid in sids]
        records = await fleet.collect([])
    finally:
        await fleet.close()
        for sid in sids:
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(f"/sessions/{sid}")
    per_session = {}
    for sid, stats, record in zip(sids, statuses, records, strict=True):
        out = stats.get("outbox", {})
        received = len(record.received)
        per_session[sid] = {
            "handed": out.get("handed"), "sent": out.get("sent"), "received": received,
            # The room forwards only changed joints: an exact repeat never arrives.
            "repeated": out.get("repeated"),
            "lost": None if out.get("sent") is None
            else out["sent"] - int(out.get("repeated") or 0) - received,
            "superseded": out.get("superseded"), "not_sent": out.get("not_sent"),
            # waiting when the session stopped: dropped, by design never sent after a stop
            "dropped_on_stop": out.get("dropped_on_stop"),
            "failed": out.get("failed"), "underruns": stats.get("plan_underruns"),
            "errors": stats.get("errors_by_kind"),
            "commands_per_s": round(received / duration, 2),
        }
    keys = ("handed", "sent", "received", "repeated", "lost", "superseded", "not_sent",
            "dropped_on_stop", "failed", "underruns")
    totals = {k: sum(int(s[k] or 0) for s in per_session.values()) for k in keys}
    return {"sessions": args.sessions, "minutes": round(duration / 60, 2), "totals": totals,
            "rss_slope": slope_per_10min(samples, args.warmup_min * 60),
            "rss_slope_by_process": slopes_by_process(samples, args.warmup_min * 60),
            "gc_pauses": gc_window, "per_session": per_session, "samples": samples}


# -- the earlier growth, explained -------------------------------------------------------
async def record_cost(arena: LocalArenaServer, commands: int = 3000) -> dict[str, Any]:
    """Python heap blocks that an in-process robot's command log keeps per command."""
    from orchestrator.arena.rest import ArenaRest
    from orchestrator.arena.robotics import RoboticsProducer
    from sim_robot.robot import SimRobot

    ws, room = f"explain-{uuid.uuid4().hex[:6]}", "commands"
    rest = ArenaRest(arena.base_url)
    await rest.create_robotics_room(ws, room)
    joints = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll",
              "gripper")
    robot = SimRobot(arena.base_url, ws, joint_output=room, joints=joints,
                     max_velocity=1e6, limits=(-1e6, 1e6))
    producer = RoboticsProducer(arena.base_url, ws, room)
    await robot.start()
    await producer.start()
    try:
        gc.collect()
        before = sys.getallocatedblocks()
        for i in range(commands):
            await producer.send_joints({j: float(i * 7 + n) for n, j in enumerate(joints)})
            if i % 50 == 0:
                await asyncio.sleep(0)
        deadline = time.monotonic() + 30
        while len(robot.received) < commands and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        received = len(robot.received)
        gc.collect()
        kept = sys.getallocatedblocks()
        robot.received.clear()
        gc.collect()
        cleared = sys.getallocatedblocks()
    finally:
        await producer.stop()
        await robot.stop()
        await rest.delete_robotics_room(ws, room)
        await rest.aclose()
    return {"commands": commands, "received": received,
            "blocks_per_command_kept": round((kept - before) / max(1, received), 2),
            "blocks_per_command_given_back_on_clear": round((kept - cleared) / max(1, received),
                                                            2)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    env = dict(kv.split("=", 1) for kv in args.env)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        repo = Path(tmp) / "models"
        write_so100_model(repo, MODEL, chunk_size=args.chunk)
        with (LocalArenaServer() as arena,
              LocalTriton(repo, work_dir=Path(tmp) / "triton") as triton):
            api = ApiProcess(triton.grpc_url, arena.base_url,
                             max(64, args.sessions + args.parallel), env,
                             args.out.with_suffix(".orchestrator.log"))
            await api.start()
            assert api.proc is not None
            api_pid = api.proc.pid

            def procs() -> list[psutil.Process]:
                return orchestrator_processes(api_pid, args.pid, args.match)

            try:
                async with httpx.AsyncClient(base_url=api.url, timeout=30.0) as http:
                    start = sample(procs())
                    # Two halves: growth in the first is the allocator's high-water mark as
                    # much as a leak; growth that continues in the second is a leak.
                    half = args.cycles // 2
                    cycled = await cycles(http, arena.base_url, half, args.parallel)
                    after_half = sample(procs())
                    second = await cycles(http, arena.base_url, args.cycles - half,
                                          args.parallel)
                    after_cycles = sample(procs())
                    cycled = {"first_half": cycled, "second_half": second,
                              "rss_mib": [start["rss_mib"], after_half["rss_mib"],
                                          after_cycles["rss_mib"]]}
                    print(f"cycles: {second['failed'] + cycled['first_half']['failed']} "
                          f"failed; RSS {cycled['rss_mib']} MiB (start, half, all)",
                          flush=True)
                    soaked = await soak(http, arena.base_url, args, procs)
                    await asyncio.sleep(5.0)
                    end = sample(procs())
                    print(f"soak: {soaked['totals']}; RSS slope after warm-up "
                          f"{soaked['rss_slope']}; end RSS {end['rss_mib']} MiB", flush=True)
                    print(f"garbage collections in the window: {soaked['gc_pauses']}",
                          flush=True)
            finally:
                code = api.stop()
            explained = await record_cost(arena) if args.explain else None
            if explained:
                print(f"in-process robot log: {explained}", flush=True)
    return {
        "bench": "soak (orchestrator alone, sampled from outside)",
        "machine": platform.platform(), "cpus": psutil.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "note": "shared machine: other agents' processes run beside it",
        "settings": {**vars(args), "command": api.command, "env": env},
        "resources": {"start": start, "after_cycles": after_cycles, "end": end},
        "cycles": cycled, "soak": soaked, "api_exit_code": code,
        "in_process_robot_log": explained,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--parallel", type=int, default=8, help="lifecycles at a time")
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-min", type=float, default=2.0,
                        help="minutes of the soak left out of the RSS slope")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--camera-fps", type=float, default=10.0)
    parser.add_argument("--chunk", type=int, default=50,
                        help="actions per chunk of the soak's model (10 underran: 10-15 Hz)")
    parser.add_argument("--pid", type=int, action="append", default=[],
                        help="another orchestrator process to sample (repeatable)")
    parser.add_argument("--match", action="append", default=[],
                        help="also sample processes whose command line holds this (workers)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment for the orchestrator (e.g. ORCHESTRATOR_WORKERS=2)")
    parser.add_argument("--explain", action="store_true",
                        help="also measure an in-process robot log's heap blocks per command")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = asyncio.run(main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    cli()
