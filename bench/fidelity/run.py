"""Run the fidelity bench: oracle models on the local Triton, the real orchestrator (its HTTP
API, control loops, WebRTC video consumers), simulated robots over the local room server.

One window per (oracle, added latency): every configuration is one session with its own
robot, all in the same window, so they share the machine's load. Bench-only hooks, no
library change: the Triton client's ``infer`` is wrapped to add the latency (the clock is
untouched), each session's control core's ``on_tick``/``on_chunk`` are wrapped to record
the published stream and the merged chunks, and the LeRobot references swap a session's
plan and refill rule for ``blends.AggregatePlan``/``QueueFractionRefill``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arena_server.launcher import LocalArenaServer
from bench.comparison.fleet import Fleet, FleetConfig, RobotRooms
from orchestrator.control.plan import BLEND_MODES, Plan
from orchestrator.sessions.loop import ControlLoop
from orchestrator.settings import Settings
from orchestrator.triton.client import TritonClient
from orchestrator.triton.launcher import LocalTriton
from tests.support.orchestrator import Orchestrator, run_orchestrator

from .blends import AGGREGATES, AggregatePlan, QueueFractionRefill
from .metrics import MergeRecord, crossfade_bound_violations, fidelity
from .oracle import OracleSpec, export_oracle

log = logging.getLogger(__name__)

JOINTS = ("shoulder_pan", "elbow_flex")


@dataclass(frozen=True)
class Config:
    label: str
    blend: str  # a stack BlendMode or a LeRobot aggregate
    align: bool  # chunks start at their observation's capture (else: the snapshot tick)
    lerobot: bool = False
    fade_from_merge: bool = False  # crossfade_anchor="merge"


def stack_configs() -> list[Config]:
    return [Config(f"{b}{'' if a else ' (snapshot)'}", b, a)
            for b in BLEND_MODES for a in (True, False)] + [
        Config("crossfade (fade from merge)", "crossfade", True, fade_from_merge=True)]


def lerobot_configs() -> list[Config]:
    return [Config(f"lerobot {n}", n, False, lerobot=True) for n in AGGREGATES]


@dataclass
class Options:
    latencies_s: list[float] = field(default_factory=lambda: [0.0, 0.1, 0.3, 0.8])
    variants: list[str] = field(default_factory=lambda: ["state", "camera"])
    configs: list[Config] = field(default_factory=lambda: stack_configs() + lerobot_configs())
    disagreement: float = 1.5  # max offset of the disagreeing oracle's plans (units)
    disagreement_latencies_s: list[float] = field(default_factory=lambda: [0.1])
    duration_s: float = 20.0
    warmup_s: float = 3.0
    rate_hz: float = 30.0
    chunk_size: int = 100  # ACT's default (chunk 50 cannot feed 30 Hz at 800 ms: see README)
    velocity: tuple[float, ...] = (20.0, -12.0)
    camera_fps: float = 10.0
    camera_hw: tuple[int, int] = (144, 192)
    joint_rate: float = 30.0
    max_step: float = 10.0
    flow_timeout_s: float = 60.0
    trace_ticks: int = 24  # ticks kept around one merge per configuration, for the plot


class Recorder:
    """The published stream and merged chunks of one session, from its control core."""

    def __init__(self, loop: ControlLoop) -> None:
        self.loop = loop
        self.decided: list[int] = []
        self.published: dict[int, np.ndarray] = {}
        self.merges: list[MergeRecord] = []
        core = loop.core
        on_tick, on_chunk = core.on_tick, core.on_chunk

        def tick(k: int, now: float, fresh: Any) -> Any:
            decision = on_tick(k, now, fresh)
            self.decided.append(k)
            if decision.command is not None:
                self.published[k] = np.array(decision.command, dtype=np.float64)
            return decision

        def chunk(values: np.ndarray, k_obs: int, k_now: int, latency_s: float | None = None,
                  **kwargs: Any) -> Any:
            align = kwargs.get("align_tick")
            k_align = k_obs if align is None else min(k_obs, align)
            last = core.last_tick
            k_eff = k_now if last is None else max(k_now, last)
            fade, first, gap = self._overlap(np.asarray(values), k_align, k_eff)
            result = on_chunk(values, k_obs, k_now, latency_s, **kwargs)
            if result is not None:
                self.merges.append(MergeRecord(k_eff, k_align, k_obs, np.array(values),
                                               float(kwargs.get("obs_age_s") or 0.0), fade,
                                               first, gap))
            return result

        core.on_tick = tick  # type: ignore[method-assign,assignment]
        core.on_chunk = chunk  # type: ignore[method-assign,assignment]

    def _overlap(self, values: np.ndarray, k_align: int, k_now: int) -> tuple[int, int, float]:
        """The crossfade's length and first index, and the chunks' largest disagreement on
        the ticks both cover (0, 0, 0.0 when nothing overlaps or no crossfade), as
        ``Plan.merge`` will compute them."""
        plan = self.loop.core.plan
        ahead = [t for t, _ in plan.snapshot() if t > k_now and 0 <= t - k_align < len(values)]
        gaps = [float(np.max(np.abs(values[t - k_align] - np.asarray(plan.action_for(t)))))
                for t in ahead]
        if not gaps or plan.blend != "crossfade" or isinstance(plan, AggregatePlan):
            return 0, 0, 0.0
        first = ahead[0] - k_align if plan.crossfade_anchor == "merge" else 0
        return plan._ramp_length(k_align + first), first, max(gaps)


def _add_latency(client: TritonClient, seconds: float) -> None:
    infer = client.infer

    async def delayed(*args: Any, **kwargs: Any) -> Any:
        out = await infer(*args, **kwargs)
        if seconds > 0:
            await asyncio.sleep(seconds)  # the answer comes back later; the clock is untouched
        return out

    client.infer = delayed  # type: ignore[method-assign]


def _trace(rec: Recorder, ticks: set[int], span: int) -> dict[str, Any] | None:
    """Published values of joint 0 around a merge in the middle of the window, with the
    chunk's own values as aligned."""
    merges = [m for m in rec.merges if m.k_now + 1 in ticks]
    if not merges:
        return None
    m = merges[len(merges) // 2]
    k0 = m.k_now + 1
    window = range(k0 - span // 2, k0 + span // 2)
    return {"merge_tick": k0, "align_tick": m.align_tick,
            "ticks": [k for k in window if k in rec.published],
            "published": [float(rec.published[k][0]) for k in window if k in rec.published],
            "chunk": [float(m.chunk[k - m.align_tick][0]) for k in window
                      if 0 <= k - m.align_tick < len(m.chunk)],
            "chunk_ticks": [k for k in window if 0 <= k - m.align_tick < len(m.chunk)]}


async def run_window(oracle: OracleSpec, latency: float, configs: list[Config],
                     arena: LocalArenaServer, triton_url: str, opts: Options) -> dict[str, Any]:
    settings = Settings(triton_url=triton_url, triton_timeout_s=10.0, max_sessions=64,
                        latency_prior_s=max(0.05, latency + 0.05), max_step=opts.max_step)
    workspace = f"fidelity-{uuid.uuid4().hex[:8]}"
    async with run_orchestrator(settings) as orch:
        _add_latency(orch.manager.triton, latency)
        recorders, rooms = await _create(orch, oracle, configs, arena, workspace, opts)
        # Robots that go where they are told at once and whose cameras draw their joints.
        robots = Fleet(FleetConfig(
            arena.base_url, rooms, fps=opts.camera_fps, width=oracle.image_hw[1],
            height=oracle.image_hw[0], joint_rate=opts.joint_rate, joints=oracle.joints,
            extra={"max_velocity": 1e6, "limits": (-1e4, 1e4), "initial": None,
                   "camera_joints": oracle.joints}))
        received: list[int] = []
        try:
            await robots.start()
            for sid in recorders:
                response = await orch.http.post(f"/sessions/{sid}/start")
                if response.status_code != 200:
                    raise RuntimeError(f"start {sid}: {response.status_code} {response.text}")
            deadline = time.monotonic() + opts.flow_timeout_s
            while not all(len(r.published) >= 5 for r in recorders.values()):
                if time.monotonic() > deadline:
                    raise RuntimeError("sessions not all publishing")
                await asyncio.sleep(0.1)
            await asyncio.sleep(opts.warmup_s)
            start = {sid: len(r.decided) for sid, r in recorders.items()}
            t0 = time.monotonic()
            await asyncio.sleep(opts.duration_s)
            span = time.monotonic() - t0
            end = {sid: len(r.decided) for sid, r in recorders.items()}
            statuses = {sid: (await orch.status(sid))["stats"] for sid in recorders}
            for sid in recorders:
                with contextlib.suppress(Exception):
                    await orch.http.post(f"/sessions/{sid}/stop")
            received = [len(r.received) for r in await robots.collect([])]
        finally:
            await robots.close()
    rows: dict[str, Any] = {}
    for (sid, rec), cfg in zip(recorders.items(), configs, strict=True):
        ticks = rec.decided[start[sid]:end[sid]]
        tick_set = set(ticks)
        merges = [m for m in rec.merges if m.k_now + 1 in tick_set]
        row = fidelity(ticks, rec.published, merges, oracle.velocity, oracle.fps, opts.max_step)
        if cfg.blend == "crossfade":
            row["crossfade_bound_violations"] = crossfade_bound_violations(
                rec.published, merges, oracle.velocity, oracle.fps)
        stats = statuses[sid]
        row["alignment_offset"] = stats.get("alignment_offset")
        row["inference_latency_ms"] = stats.get("inference_latency_ms")
        row["plan_underruns"] = stats.get("plan_underruns")
        row["tick_lateness_ms"] = stats.get("tick_lateness_ms")  # the event loop's load
        row["trace"] = _trace(rec, tick_set, opts.trace_ticks)
        rows[cfg.label] = row
    return {"oracle": oracle.name, "source": oracle.source, "added_latency_s": latency,
            "window_s": round(span, 2), "robots_commands_received": received,
            "configs": rows}


async def _create(orch: Orchestrator, oracle: OracleSpec, configs: list[Config],
                  arena: LocalArenaServer, workspace: str, opts: Options
                  ) -> tuple[dict[str, Recorder], list[RobotRooms]]:
    recorders: dict[str, Recorder] = {}
    rooms: list[RobotRooms] = []
    for i, cfg in enumerate(configs):
        sid = f"fid{i:02d}-{uuid.uuid4().hex[:4]}"
        created = await orch.create_session(
            session_id=sid, policy_path=oracle.name, camera_names=[oracle.camera],
            arena_server_url=arena.base_url, workspace_id=workspace, rate_hz=opts.rate_hz,
            blend="replace" if cfg.lerobot else cfg.blend)
        loop = orch.manager.get(sid).loop
        assert loop is not None, "a session of a served model has its loop at once"
        loop.settings = dataclasses.replace(loop.settings, align_to_capture=cfg.align)
        if cfg.lerobot:
            loop.core.plan = AggregatePlan(len(oracle.joints), oracle.chunk_size, cfg.blend)
            loop.core.refill = QueueFractionRefill(oracle.chunk_size, 0.5)
        elif cfg.fade_from_merge:
            old = loop.core.plan
            loop.core.plan = Plan(old.action_dim, old.max_ahead, "crossfade",
                                  old.crossfade_ticks, old.ensemble_m, crossfade_anchor="merge")
        recorders[sid] = Recorder(loop)
        rooms.append(RobotRooms(created["workspace_id"], created["joint_input_room_id"],
                               created["joint_output_room_id"], dict(created["camera_room_ids"])))
    return recorders, rooms


def oracles(opts: Options) -> dict[str, OracleSpec]:
    common = {"joints": JOINTS, "velocity": opts.velocity, "chunk_size": opts.chunk_size,
              "fps": opts.rate_hz, "image_hw": opts.camera_hw}
    out = {v: OracleSpec(f"oracle_{v}", v, **common) for v in opts.variants}  # type: ignore[arg-type]
    if opts.disagreement > 0 and opts.disagreement_latencies_s:
        out["disagree"] = OracleSpec("oracle_disagree", "state", disagreement=opts.disagreement,
                                     **common)  # type: ignore[arg-type]
    return out


async def run(opts: Options, on_window: Callable[[dict[str, Any]], None] | None = None
              ) -> dict[str, Any]:
    windows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-fidelity-") as tmp:
        root = Path(tmp)
        specs = oracles(opts)
        for spec in specs.values():
            await asyncio.to_thread(export_oracle, spec, root / "model_repository")
        triton = LocalTriton(root / "model_repository", work_dir=root / "triton", ort_threads=1)
        try:
            with LocalArenaServer() as arena:
                await asyncio.to_thread(triton.start, 180.0)
                plan: list[tuple[OracleSpec, float, list[Config]]] = [
                    (specs[v], lat, opts.configs)
                    for v in opts.variants for lat in opts.latencies_s]
                if "disagree" in specs:
                    aligned = [c for c in opts.configs if c.align or c.lerobot]
                    plan += [(specs["disagree"], lat, aligned)
                             for lat in opts.disagreement_latencies_s]
                for spec, latency, configs in plan:
                    try:
                        window = await run_window(spec, latency, configs, arena,
                                                  triton.grpc_url, opts)
                    except Exception as exc:
                        log.exception("window %s at %.1f s failed", spec.name, latency)
                        window = {"oracle": spec.name, "source": spec.source,
                                  "added_latency_s": latency, "error": f"{exc!r}"}
                    windows.append(window)
                    if on_window is not None:
                        on_window(window)
        finally:
            triton.close()
    return {"windows": windows}
