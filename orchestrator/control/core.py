"""One session's control decisions for one tick, composed from the pure parts.

The asyncio loop stays thin::

    clock = TickClock(t0, rate); k = -1
    loop: sleep until clock.next_deadline(k); k = clock.next_tick(k, now)
          fresh = observation_freshness(frame_ages, joint_age_or_None, stale_after_s)
          d = core.on_tick(k, now, fresh)
          if d.command is not None: publish(mapper.to_command(d.command))
          log d.interventions (LogThrottle); if d.request_inference: start a task that
          sends the latest observation and later calls core.on_chunk(chunk, d.tick, k,
          latency) or core.on_request_failed(d.tick).

Nothing here waits for inference; ``dataclasses.asdict(core.stats())`` is JSON-ready.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from orchestrator.control.alignment import AlignmentStats, AlignmentTracker
from orchestrator.control.freshness import Freshness
from orchestrator.control.plan import BlendMode, MergeResult, Plan
from orchestrator.control.reasons import Reason
from orchestrator.control.safety import DEFAULT_MAX_STEP, Intervention, SafetyLayer
from orchestrator.control.timing import (
    JitterStats,
    LatencyStats,
    LatencyTracker,
    RefillPolicy,
    period_jitter,
)


@dataclass(frozen=True)
class TickDecision:
    tick: int
    command: np.ndarray | None  # None: publish nothing, the robot holds its last command
    request_inference: bool  # send the latest observation now, tagged with `tick`
    underrun: bool
    reason: Reason  # OK when a command is published, else why not
    horizon: int  # ticks the plan covers after this one
    interventions: tuple[Intervention, ...] = ()


@dataclass(frozen=True)
class ControlStats:
    ticks: int
    missed_ticks: int  # skipped because the loop woke up more than a period late
    commands: int
    underruns: int
    holds: dict[str, int]  # ticks that published nothing, by reason
    requests: int
    chunks: int  # chunks merged into the plan
    discarded_chunks: int  # answers to requests voided by a reset or an emergency stop
    rejected_chunks: int  # wrong shape or non-finite values: not merged
    last_chunk_error: str | None
    failed_requests: int
    dropped_past_actions: int  # chunk actions that arrived after their tick
    in_flight: bool
    horizon: int
    latency: LatencyStats
    jitter: JitterStats
    alignment: AlignmentStats  # snapshot tick minus the tick chunks were aligned to


class ControlCore:
    """Plan + refill policy + latency + safety for one session. Ticks must increase."""

    def __init__(
        self,
        plan: Plan,
        safety: SafetyLayer,
        refill: RefillPolicy,
        latency: LatencyTracker,
        rate: float,
        jitter_window: int = 300,
    ) -> None:
        if plan.action_dim != len(safety.joint_names):
            raise ValueError(f"plan has {plan.action_dim} action values, safety layer "
                             f"{len(safety.joint_names)} joints")
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.plan = plan
        self.safety = safety
        self.refill = refill
        self.latency = latency
        self.rate = rate
        self._periods: deque[float] = deque(maxlen=jitter_window)
        self._last_tick: int | None = None
        self._last_tick_time: float | None = None
        self._in_flight: int | None = None  # tick of the outstanding request
        self._in_flight_void = False  # its answer must not enter the plan
        self._last_request_tick: int | None = None
        self._primed = False  # a chunk has been merged since start/reset
        self.last_chunk_error: str | None = None
        self._holds: Counter[str] = Counter()
        self._n = Counter[str]()
        self.alignment = AlignmentTracker()

    @classmethod
    def create(
        cls,
        action_names: Sequence[str],
        chunk_size: int,
        rate: float,
        *,
        blend: BlendMode = "crossfade",
        crossfade_ticks: int = 10,
        ensemble_m: float = 0.01,
        margin_ticks: int = 3,
        replan_every: int | None = None,
        latency_prior_s: float = 0.1,
        limits: Mapping[str, tuple[float, float]] | None = None,
        max_step: float | Mapping[str, float] | None = DEFAULT_MAX_STEP,
    ) -> ControlCore:
        """A core with the parts built from plain settings (the plan holds one chunk)."""
        return cls(
            Plan(len(action_names), chunk_size, blend, crossfade_ticks, ensemble_m),
            SafetyLayer(action_names, limits, max_step),
            RefillPolicy(margin_ticks, replan_every),
            LatencyTracker(latency_prior_s),
            rate,
        )

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    @property
    def in_flight_tick(self) -> int | None:
        """The tick of the outstanding request (its observation's tick), if any."""
        return self._in_flight

    @property
    def last_tick(self) -> int | None:
        return self._last_tick

    def on_tick(self, k_now: int, now: float, observation_fresh: bool | Freshness) -> TickDecision:
        """Decide tick ``k_now`` (run at time ``now``)."""
        if self._last_tick is not None and k_now <= self._last_tick:
            raise ValueError(f"tick {k_now} after tick {self._last_tick}: ticks must increase")
        if self._last_tick == k_now - 1 and self._last_tick_time is not None:
            self._periods.append(now - self._last_tick_time)
        elif self._last_tick is not None:
            self._n["missed_ticks"] += k_now - self._last_tick - 1  # the loop woke up late
        self._last_tick, self._last_tick_time = k_now, now
        self._n["ticks"] += 1
        fresh, stale_reason = _freshness(observation_fresh)

        action = self.plan.pop(k_now)
        safe = self.safety.filter(action)
        horizon = self.plan.horizon(k_now)
        underrun = action is None and not self.safety.latched and self._primed and fresh
        reason = safe.reason
        if action is None and reason is Reason.NO_ACTION:
            if not fresh:
                reason = stale_reason
            else:
                reason = Reason.UNDERRUN if self._primed else Reason.WAITING_FOR_CHUNK
        if safe.values is None:
            self._holds[reason.value] += 1
        else:
            self._n["commands"] += 1
        if underrun:
            self._n["underruns"] += 1

        request = not self.safety.latched and self.refill.should_request(
            k_now, horizon, self.in_flight, self.latency.p95, self.rate,
            self._last_request_tick, fresh,
        )
        if request:
            self._in_flight, self._in_flight_void = k_now, False
            self._last_request_tick = k_now
            self._n["requests"] += 1
        return TickDecision(k_now, safe.values, request, underrun, reason, horizon,
                            safe.interventions)

    def on_chunk(
        self, chunk: np.ndarray, k_obs: int, k_now: int, latency_s: float | None = None,
        *, align_tick: int | None = None, obs_age_s: float | None = None,
        align_source: str = "snapshot",
    ) -> MergeResult | None:
        """The answer to the request made at tick ``k_obs``, arriving after tick ``k_now``
        was decided. ``align_tick`` (default ``k_obs``) is the tick the chunk's first action
        belongs to: the tick nearest its observation's capture (see ``alignment``), at or
        before the request's tick; ``obs_age_s`` how much older than the snapshot that
        observation was (for the stats). Returns None when it is not merged (not the
        outstanding request, or voided by a reset or an emergency stop, or rejected: wrong
        shape or non-finite values, see ``last_chunk_error``). Never raises for bad model
        output."""
        if self._in_flight is None or k_obs != self._in_flight:
            self._n["discarded_chunks"] += 1
            return None
        void = self._in_flight_void or self.safety.latched
        self._in_flight, self._in_flight_void = None, False
        if latency_s is not None and math.isfinite(latency_s) and latency_s >= 0:
            # A bad measurement is skipped rather than raised: the request is over either way
            # and its chunk must not be lost over a statistic.
            self.latency.add(latency_s)
        if self._last_tick is not None:
            k_now = max(k_now, self._last_tick)  # never plan a tick already decided
        if void:
            self._n["discarded_chunks"] += 1
            return None
        k_align = k_obs if align_tick is None else min(k_obs, align_tick)
        try:
            result = self.plan.merge(chunk, k_align, k_now)
        except ValueError as exc:
            # Bad model output is a failed request: the plan goes on, the next tick may ask
            # again, and the session reports the error; it never stops the loop.
            self._n["rejected_chunks"] += 1
            self.last_chunk_error = str(exc)
            return None
        self._primed = True
        self._n["chunks"] += 1
        self._n["dropped_past_actions"] += result.dropped_past
        self.alignment.add(k_obs - k_align, obs_age_s if obs_age_s is not None else 0.0,
                           align_source)
        return result

    def on_request_failed(self, k_obs: int | None = None) -> None:
        """The request made at tick ``k_obs`` (None: the outstanding one, whatever its tick)
        ended without a chunk (error, timeout, no observation to send)."""
        if self._in_flight is not None and k_obs in (None, self._in_flight):
            self._in_flight, self._in_flight_void = None, False
            self._n["failed_requests"] += 1

    def latch_stop(self) -> None:
        """Emergency stop: publish nothing and request nothing until ``rearm``."""
        self.safety.latch_stop()
        self.plan.clear()
        self._in_flight_void = True

    def rearm(self, reference: np.ndarray | None = None) -> None:
        """Leave the emergency stop with an empty plan (see ``SafetyLayer.rearm``)."""
        self.reset()
        self.safety.rearm(reference)

    def reset(self) -> None:
        """Clear the plan; an outstanding request's answer will be discarded."""
        self.plan.clear()
        self._in_flight_void = self._in_flight is not None
        self._last_request_tick = None
        self._primed = False

    def stats(self) -> ControlStats:
        k = self._last_tick
        return ControlStats(
            ticks=self._n["ticks"],
            missed_ticks=self._n["missed_ticks"],
            commands=self._n["commands"],
            underruns=self._n["underruns"],
            holds=dict(self._holds),
            requests=self._n["requests"],
            chunks=self._n["chunks"],
            discarded_chunks=self._n["discarded_chunks"],
            rejected_chunks=self._n["rejected_chunks"],
            last_chunk_error=self.last_chunk_error,
            failed_requests=self._n["failed_requests"],
            dropped_past_actions=self._n["dropped_past_actions"],
            in_flight=self.in_flight,
            horizon=0 if k is None else self.plan.horizon(k),
            latency=self.latency.stats(),
            jitter=period_jitter(self._periods, self.rate),
            alignment=self.alignment.stats(),
        )


def _freshness(value: bool | Freshness) -> tuple[bool, Reason]:
    if isinstance(value, Freshness):
        return value.fresh, value.reason
    return bool(value), Reason.OK if value else Reason.STALE_OBSERVATION
