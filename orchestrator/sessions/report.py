"""What a session reports: its control loop's stats for the status endpoint, the model's
description, the plan for the debug endpoint, and its room connections' counts.
Read-only views."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from orchestrator.arena.robotics import RoboticsConsumer, RoboticsProducer
from orchestrator.arena.video import VideoConsumer
from orchestrator.control.core import ControlCore, TickDecision
from orchestrator.control.joints import JointMapper
from orchestrator.control.reasons import Reason
from orchestrator.sessions.observation import ObservationBuilder
from orchestrator.sessions.policy import PolicyRef
from orchestrator.triton.model_contract import ModelContract


class CommandHistory:
    """The last seconds of published commands, thinned to a few per second: the console's
    per-joint plot. A publish observer of the loop."""

    def __init__(self, window_s: float = 5.0, min_interval_s: float = 0.1) -> None:
        self.window_s, self.min_interval_s = window_s, min_interval_s
        self._items: deque[tuple[float, dict[str, float]]] = deque()

    def record(self, command: Mapping[str, float], at: float, sent: bool, _: object) -> None:
        if not sent or (self._items and at - self._items[-1][0] < self.min_interval_s):
            return
        self._items.append((at, dict(command)))
        while self._items and at - self._items[0][0] > self.window_s:
            self._items.popleft()

    def as_dict(self, now: float) -> dict[str, Any]:
        joints = list(self._items[-1][1]) if self._items else []
        samples = [[round(now - at, 3), *(cmd.get(j) for j in joints)]
                   for at, cmd in self._items if now - at <= self.window_s]
        return {"joints": joints, "samples": samples}  # sample: [age_s, value per joint]


@dataclass
class LoopCounters:
    """What the loop counts beside the control core's own statistics."""

    errors: Counter[str] = field(default_factory=Counter)
    interventions: Counter[str] = field(default_factory=Counter)
    commands_sent: int = 0
    obs_to_command: deque[float] = field(default_factory=lambda: deque(maxlen=500))
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=500))
    last_decision: TickDecision | None = None
    recent_commands: CommandHistory = field(default_factory=CommandHistory)


class _Timing(Protocol):
    """The loop settings reported (``LoopSettings`` has them)."""

    @property
    def rate_hz(self) -> float: ...
    @property
    def blend(self) -> str: ...
    @property
    def crossfade_ticks(self) -> int: ...
    @property
    def ensemble_m(self) -> float: ...
    @property
    def margin_ticks(self) -> int: ...
    @property
    def replan_every(self) -> int | None: ...
    @property
    def stale_after_s(self) -> float: ...
    @property
    def latency_prior_s(self) -> float: ...
    @property
    def inference_timeout_s(self) -> float: ...


class LoopView(Protocol):
    """What reporting reads from a control loop: a protocol, so that this module does not
    import the loop (which imports this one)."""

    core: ControlCore
    counters: LoopCounters
    mapper: JointMapper
    builder: ObservationBuilder
    inference_problem: str | None

    @property
    def contract(self) -> ModelContract: ...
    @property
    def policy(self) -> PolicyRef: ...
    @property
    def settings(self) -> _Timing: ...


def _ms_percentile(values: deque[float], q: float, absolute: bool = False) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    if absolute:
        arr = np.abs(arr)
    return round(float(np.percentile(arr, q)) * 1000, 3) if arr.size else None


def loop_stats(loop: LoopView) -> dict[str, Any]:
    core = loop.core.stats()
    counters = loop.counters
    decision = counters.last_decision
    return {
        "ticks": core.ticks,
        "missed_ticks": core.missed_ticks,
        "inference_count": core.chunks,
        "inference_requests": core.requests,
        "commands_sent": counters.commands_sent,
        "errors": sum(counters.errors.values()),
        "errors_by_kind": dict(counters.errors),
        "actions_in_queue": len(loop.core.plan),
        "plan_underruns": core.underruns,
        "holds": core.holds,
        "health": "degraded" if loop.inference_problem else "ok",
        "reason": decision.reason.value if decision else Reason.OK.value,
        "inference_latency_ms": {
            "p50": round(core.latency.p50 * 1000, 3),
            "p95": round(core.latency.p95 * 1000, 3),
            "p99": round(core.latency.p99 * 1000, 3),
            "samples": core.latency.samples,
            "measured": core.latency.measured,
        },
        "tick_jitter_ms": {"p50": round(core.jitter.p50 * 1000, 3),
                           "p99": round(core.jitter.p99 * 1000, 3),
                           "samples": core.jitter.samples},
        "tick_lateness_ms": {"p50": _ms_percentile(counters.lateness, 50, absolute=True),
                             "p99": _ms_percentile(counters.lateness, 99, absolute=True)},
        "observation_to_command_ms": {"p50": _ms_percentile(counters.obs_to_command, 50),
                                      "p99": _ms_percentile(counters.obs_to_command, 99)},
        "safety": {**loop.core.safety.counts.as_dict(), "by_kind": dict(counters.interventions)},
        "unknown_joints": {"count": loop.mapper.unknown_count,
                           "names": sorted(loop.mapper.unknown_names)},
        "invalid_joint_values": loop.mapper.invalid_count,
        "resized_frames": dict(loop.builder.resized),
        "dropped_past_actions": core.dropped_past_actions,
        # Snapshot tick minus the tick chunks were aligned to (their observation's capture).
        "alignment_offset": asdict(core.alignment),
        "discarded_chunks": core.discarded_chunks,
        "rejected_chunks": core.rejected_chunks,
        "recent_commands": counters.recent_commands.as_dict(time.monotonic()),
    }


def inference_stats(loop: LoopView) -> dict[str, Any]:
    c, settings = loop.contract, loop.settings
    return {
        "model": c.name,
        "version": loop.policy.version or "latest",
        "cameras": list(c.cameras),
        "image_sizes": {k: list(v) for k, v in c.image_sizes.items()},
        "state_joints": list(c.state_names),
        "action_joints": list(c.action_names),
        "chunk_size": c.chunk_size,
        "n_action_steps": c.n_action_steps,
        "model_fps": c.fps,
        "rate_hz": settings.rate_hz,
        "blend": settings.blend,
        "demo_model": c.is_demo,
        "latency_prior_ms": settings.latency_prior_s * 1000,
        "inference_timeout_ms": settings.inference_timeout_s * 1000,
    }


def queue_info(loop: LoopView) -> dict[str, Any]:
    core, settings = loop.core, loop.settings
    k = core.last_tick
    return {
        "current_tick": k,
        "plan_length": len(core.plan),
        "horizon": 0 if k is None else core.plan.horizon(k),
        "in_flight": core.in_flight,
        "plan": [{"tick": t, "action": a} for t, a in core.plan.snapshot()],
        "timing": {
            "rate_hz": settings.rate_hz,
            "blend": settings.blend,
            "crossfade_ticks": settings.crossfade_ticks,
            "ensemble_m": settings.ensemble_m,
            "margin_ticks": settings.margin_ticks,
            "replan_every": settings.replan_every,
            "stale_after_s": settings.stale_after_s,
            "refill_threshold_ticks": core.refill.threshold(core.latency.p95, settings.rate_hz),
        },
        "joint_state": loop.mapper.readings(),
        "missing_joints": list(loop.mapper.missing),
    }


def connection_stats(joints_in: RoboticsConsumer, commands_out: RoboticsProducer,
                     cameras: Mapping[str, VideoConsumer]) -> dict[str, Any]:
    """A session's room connections, for its status: up or not, what they received, and
    what they dropped: malformed messages (bad JSON, bad fields, too large) or ones of a
    type we have no use for."""
    dropped = {"joint_input": joints_in.stats, "joint_output": commands_out.stats}
    return {
        "images_received": {c: v.stats.frames for c, v in cameras.items()},
        "joints_received": joints_in.stats.readings,
        "connections": {
            "joint_input": joints_in.connected,
            "joint_output": commands_out.connected,
            **{f"camera_{c}": v.stats.connected for c, v in cameras.items()},
        },
        "dropped_messages": {
            **{k: {"malformed": v.malformed, "ignored": v.ignored} for k, v in dropped.items()},
            **{f"camera_{c}": {"malformed": v.stats.malformed, "ignored": v.stats.ignored}
               for c, v in cameras.items()},
        },
    }
