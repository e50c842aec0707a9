"""What one run records, and the figures computed from it: the same code for both designs.

Per session, the process under test notes every command it publishes (monotonic time,
the values, and the observation the command's newest chunk was computed from) and every
inference (latency). The robots record when each command arrived and when each camera
frame was sent. From these:

- publish period jitter: |t[i+1] - t[i] - 1/rate| between consecutive publishes;
- achieved rate and arrival jitter: the same at the robot (commands received);
- observation-to-command latency: for each observation, the first command published from
  it is found again among the robot's received commands (same values, arrived after the
  publish); its arrival time minus the send time of the camera frame the observation held
  (frame index decoded from the observation's pixels; oldest camera if several).
"""

from __future__ import annotations

import bisect
import gc
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from orchestrator.sessions.observation import Observation
from sim_robot.pattern import decode_frame_index

from .fleet import RobotRecord


@dataclass
class ObsInfo:
    tick: int
    taken_at: float
    frame_arrived: float  # oldest camera frame's arrival in the process under test
    frames: dict[str, np.ndarray]  # camera -> the frame as received (decoded after the run)
    _index: dict[str, int | None] | None = None

    @property
    def frame_index(self) -> dict[str, int | None]:
        """Camera -> frame index read from the pixels (decoded once, off the control loop)."""
        if self._index is None:
            self._index = {cam: decode_frame_index(rgb) for cam, rgb in self.frames.items()}
        return self._index


@dataclass
class SessionRecorder:
    publishes: list[tuple[float, int | None, dict[str, float]]] = field(default_factory=list)
    observations: list[ObsInfo] = field(default_factory=list)
    inferences: list[tuple[float, float]] = field(default_factory=list)  # (done at, seconds)
    _index: dict[tuple[int, float], int] = field(default_factory=dict)

    def note_publish(self, t: float, values: Mapping[str, float],
                     observation: Observation | None) -> None:
        """Called inside the tick: keep it cheap (a reference to the frames, no decoding)."""
        idx = None if observation is None else self._observation(observation)
        self.publishes.append((t, idx, dict(values)))

    def note_inference(self, done_at: float, seconds: float) -> None:
        self.inferences.append((done_at, seconds))

    def _observation(self, obs: Observation) -> int:
        key = (obs.tick, obs.taken_at)
        idx = self._index.get(key)
        if idx is None:
            idx = self._index[key] = len(self.observations)
            self.observations.append(
                ObsInfo(obs.tick, obs.taken_at, obs.oldest_stamp, dict(obs.frames)))
        return idx

    def first_publishes(self, t0: float, t1: float) -> dict[int, tuple[float, dict[str, float]]]:
        """Observation index -> the first command published from it, if inside [t0, t1]."""
        first: dict[int, tuple[float, dict[str, float]]] = {}
        for t, idx, values in self.publishes:
            if idx is not None and idx not in first:
                first[idx] = (t, values)
        return {i: v for i, v in first.items() if t0 <= v[0] <= t1}

    def frame_queries(self, robot: int, t0: float, t1: float) -> list[tuple[int, str, int]]:
        out = []
        for idx in self.first_publishes(t0, t1):
            for cam, frame in self.observations[idx].frame_index.items():
                if frame is not None:
                    out.append((robot, cam, frame))
        return out


def percentiles(values: Iterable[float], digits: int = 3) -> dict[str, float | int | None]:
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(arr, [50, 99])
    return {"n": int(arr.size), "p50": round(float(p50), digits),
            "p99": round(float(p99), digits), "max": round(float(arr.max()), digits)}


def _period_jitter_ms(times: list[float], rate: float) -> list[float]:
    if len(times) < 2:
        return []
    return list(np.abs(np.diff(np.asarray(times)) - 1.0 / rate) * 1000.0)


def _matches(received: Mapping[str, float], published: Mapping[str, float]) -> bool:
    # The room forwards only the joints that changed: the robot may get a subset.
    return bool(received) and all(
        k in published and abs(v - published[k]) <= 1e-9 * max(1.0, abs(v))
        for k, v in received.items()
    )


def _arrival_of(t_pub: float, values: Mapping[str, float], robot: RobotRecord,
                arrivals: list[float], scan: int = 40) -> float | None:
    start = bisect.bisect_left(arrivals, t_pub)
    for arrived, received in robot.received[start:start + scan]:
        if _matches(received, values):
            return arrived
    return None


@dataclass
class SessionFigures:
    summary: dict[str, Any]
    jitter_ms: list[float]
    obs_to_command_ms: list[float]
    arrival_jitter_ms: list[float]
    achieved_hz: float


def session_figures(rec: SessionRecorder, robot: RobotRecord, t0: float, t1: float,
                    rate: float) -> SessionFigures:
    span = t1 - t0
    pubs = [t for t, _, _ in rec.publishes if t0 <= t <= t1]
    arrivals_all = [a for a, _ in robot.received]
    arrivals = [a for a in arrivals_all if t0 <= a <= t1]
    jitter = _period_jitter_ms(pubs, rate)
    latencies: list[float] = []
    parts: dict[str, list[float]] = {"frame_transport": [], "frame_wait": [],
                                     "inference_and_wait": [], "command_transport": []}
    unmatched = 0
    for idx, (t_pub, values) in rec.first_publishes(t0, t1).items():
        obs = rec.observations[idx]
        sent = [robot.frames_sent.get(cam, {}).get(frame) for cam, frame in
                obs.frame_index.items() if frame is not None]
        arrived = _arrival_of(t_pub, values, robot, arrivals_all)
        if not sent or None in sent or arrived is None:
            unmatched += 1
            continue
        t_sent = min(s for s in sent if s is not None)
        latencies.append((arrived - t_sent) * 1000.0)
        parts["frame_transport"].append((obs.frame_arrived - t_sent) * 1000.0)
        parts["frame_wait"].append((obs.taken_at - obs.frame_arrived) * 1000.0)
        parts["inference_and_wait"].append((t_pub - obs.taken_at) * 1000.0)
        parts["command_transport"].append((arrived - t_pub) * 1000.0)
    arrival_jitter = _period_jitter_ms(arrivals, rate)
    achieved = len(arrivals) / span if span > 0 else 0.0
    summary = {
        "commands_published": len(pubs),
        "commands_received": len(arrivals),
        "achieved_hz": round(achieved, 2),
        "publish_jitter_ms": percentiles(jitter),
        "arrival_jitter_ms": percentiles(arrival_jitter),
        "obs_to_command_ms": percentiles(latencies),
        "obs_to_command_parts_ms_p50": {k: percentiles(v)["p50"] for k, v in parts.items()},
        "obs_to_command_unmatched": unmatched,
    }
    return SessionFigures(summary, jitter, latencies, arrival_jitter, achieved)


class CpuMeter:
    """CPU-seconds per second (1.0 = one core busy) of process groups over a window."""

    def __init__(self, groups: Mapping[str, tuple[int | None, bool]]) -> None:
        """groups: name -> (pid, with its children)."""
        self.groups = {k: v for k, v in groups.items() if v[0] is not None}
        self._start: dict[str, list[tuple[psutil.Process, float]]] = {}
        self._t0 = 0.0
        self._machine0: Any = None

    @staticmethod
    def _busy(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return float(times.user + times.system)

    def start(self) -> None:
        self._start = {}
        for name, (pid, children) in self.groups.items():
            procs: list[tuple[psutil.Process, float]] = []
            try:
                root = psutil.Process(pid)
                members = [root, *(root.children(recursive=True) if children else [])]
            except psutil.Error:
                members = []
            for proc in members:
                try:
                    procs.append((proc, self._busy(proc)))
                except psutil.Error:
                    continue
            self._start[name] = procs
        self._machine0 = psutil.cpu_times()
        self._t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        wall = max(1e-6, time.monotonic() - self._t0)
        out: dict[str, float] = {}
        for name, procs in self._start.items():
            used = 0.0
            for proc, before in procs:
                try:
                    used += self._busy(proc) - before
                except psutil.Error:
                    continue
            out[name] = round(used / wall, 3)
        m0, m1 = self._machine0, psutil.cpu_times()
        idle = (m1.idle - m0.idle) + (getattr(m1, "iowait", 0) - getattr(m0, "iowait", 0))
        total = sum(m1) - sum(m0)
        out["machine_busy_cores"] = round((1 - idle / total) * (os.cpu_count() or 1), 3) \
            if total > 0 else 0.0
        return out


def runqueue_wait_s(schedstat: Path | str = "/proc/thread-self/schedstat") -> float | None:
    """Seconds a thread has waited, ready to run, for a CPU (its schedstat; by default the
    calling thread's)."""
    try:  # "<ns on a CPU> <ns waiting on a run queue> <time slices>"
        with open(schedstat) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None  # not Linux, or schedstats off


class ThreadCpu:
    """CPU of this process's main thread (the event loop: control ticks, WebSocket and RTP
    handling) apart from its other threads (video decoding and frame conversion in aiortc's
    and asyncio's worker threads), over a window; and how long the main thread waited,
    ready to run, for a CPU (Linux's schedstat: the machine's contention, not our work)."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._main = threading.main_thread().native_id
        self._schedstat = Path(f"/proc/self/task/{self._main}/schedstat")
        self._t0 = 0.0
        self._start: tuple[float, float] = (0.0, 0.0)
        self._wait0: float | None = None

    def _split(self) -> tuple[float, float]:
        main = other = 0.0
        for t in self._proc.threads():
            if t.id == self._main:
                main += t.user_time + t.system_time
            else:
                other += t.user_time + t.system_time
        return main, other

    def start(self) -> None:
        self._start, self._t0 = self._split(), time.monotonic()
        self._wait0 = runqueue_wait_s(self._schedstat)

    def stop(self) -> dict[str, float]:
        """Seconds in the window: main_s and other_threads_s of CPU, wall_s, and (where
        the kernel tells) main_runqueue_wait_s."""
        main, other = self._split()
        out = {"main_s": main - self._start[0], "other_threads_s": other - self._start[1],
               "wall_s": time.monotonic() - self._t0}
        wait = runqueue_wait_s(self._schedstat)
        if wait is not None and self._wait0 is not None:
            out["main_runqueue_wait_s"] = wait - self._wait0
        return out


class GcPauses:
    """Garbage-collector pauses on this process's main thread (the event loop) over a window:
    every collection stops the loop, so each is a late pass for every session on it. Then,
    after the window, what a full collection costs now (what the next one would stop it)."""

    def __init__(self) -> None:
        self._main = threading.main_thread()
        self._began: float | None = None
        self.pauses: list[tuple[int, float]] = []  # (generation, ms)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if threading.current_thread() is not self._main:
            return
        if phase == "start":
            self._began = time.perf_counter()
        elif self._began is not None:
            self.pauses.append((info["generation"], (time.perf_counter() - self._began) * 1e3))
            self._began = None

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def detach(self) -> None:
        """Stop listening (also where a run failed before ``stop``)."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def stop(self) -> dict[str, Any]:
        self.detach()
        out: dict[str, Any] = {}
        for gen in (0, 1, 2):
            ms = [p for g, p in self.pauses if g == gen]
            out[f"gen{gen}"] = {"n": len(ms), "max_ms": round(max(ms), 2) if ms else None,
                                "total_ms": round(sum(ms), 2)}
        began = time.perf_counter()
        gc.collect()
        out["full_collection_after_ms"] = round((time.perf_counter() - began) * 1e3, 2)
        out["frozen_objects"] = gc.get_freeze_count()
        return out
