"""The real-time control loop of one session, on asyncio.

Ticks are deadline-based (``TickClock``); each tick asks the pure ``ControlCore`` what to
publish and whether to request a chunk. Inference runs in its own task, never inside a
tick: the tick only snapshots the latest observation and goes on publishing from the plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import numpy as np

from orchestrator.control.core import ControlCore
from orchestrator.control.freshness import age_since, observation_freshness
from orchestrator.control.joints import JointMapper
from orchestrator.control.timing import TickClock
from orchestrator.observability import metrics
from orchestrator.observability.logs import RateLimitedLogger
from orchestrator.sessions import report
from orchestrator.sessions.capture import JointReadings, align, observation_state, refusal
from orchestrator.sessions.config import LoopSettings
from orchestrator.sessions.failures import ERROR_KINDS, StaleObservation, failure_kind
from orchestrator.sessions.observation import Observation, ObservationBuilder
from orchestrator.sessions.policy import PolicyRef
from orchestrator.sessions.scheduler import Outbox, membership, scheduler_for
from orchestrator.triton.client import TritonClient
from orchestrator.triton.errors import TritonError
from orchestrator.triton.model_contract import ModelContract

log = logging.getLogger(__name__)


# (command, monotonic time it was handed to the room, whether it was sent, the observation
# behind the chunk it came from): for benchmarks and tools that trace commands.
PublishObserver = Callable[[Mapping[str, float], float, bool, "Observation | None"], None]


class FrameSource(Protocol):
    def latest(self) -> Any: ...  # a Frame with .rgb, .arrived_at, .seq; or None
    def newest_arrival(self) -> float | None: ...  # the newest frame's, not converted yet


class ControlLoop:
    def __init__(
        self,
        *,
        session_id: str,
        contract: ModelContract,
        policy: PolicyRef,
        settings: LoopSettings,
        aliases: Mapping[str, str],
        triton: TritonClient,
        cameras: Mapping[str, FrameSource],
        publish: Callable[[Mapping[str, float]], Awaitable[object]],
        joints_alive: Callable[[], bool] = lambda: False,
        on_crash: Callable[[str], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.contract = contract
        self.policy = policy
        self.settings = settings
        self._triton = triton
        self._cameras = cameras
        self._joints_alive = joints_alive
        self._on_crash = on_crash
        self.mapper = JointMapper(contract.state_names, aliases,
                                  action_names=contract.action_names, unread=settings.unread_joints)
        self.core = ControlCore.create(
            contract.action_names, contract.chunk_size, settings.rate_hz,
            blend=settings.blend, crossfade_ticks=settings.crossfade_ticks,
            ensemble_m=settings.ensemble_m, margin_ticks=settings.margin_ticks,
            replan_every=settings.replan_every, latency_prior_s=settings.latency_prior_s,
            limits=dict(settings.limits), max_step=settings.max_step,
        )
        self.builder = ObservationBuilder(contract)
        self.joint_readings = JointReadings()
        self.joint_stamp: Callable[[], float | None] | None = None  # see on_joints
        self._task: asyncio.Task[None] | None = None
        self._inference: asyncio.Task[None] | None = None
        self._clock: TickClock | None = None
        self._last_publish: float | None = None
        self.inference_problem: str | None = None
        self._stop_reason: str | None = None
        self.counters = report.LoopCounters()
        self.publish_observers: list[PublishObserver] = [self.counters.recent_commands.record]
        self._chunk_obs: Observation | None = None  # the observation behind the plan's head
        # Commands leave through the session's own task: a tick only hands them over.
        self.outbox = Outbox(publish, self._on_sent, name=session_id)
        self._grid_offset: int | None = None  # grid tick - own tick, while shared-ticked
        self._m = metrics.tick_series(session_id)  # plain numbers, read at scrape
        # The last chunks merged, with their observations: for debug and for checking.
        self.recent_chunks: deque[tuple[Observation, np.ndarray]] = deque(maxlen=32)
        self._warn = RateLimitedLogger(log, interval_s=10.0)
        # Known label values start at 0, so a dashboard sees the series before the first event.
        # (looked up once: ``labels()`` takes a lock and costs microseconds.)
        self._interventions = {kind: metrics.SAFETY_INTERVENTIONS.labels(session_id, kind)
                               for kind in ("limit", "step", "non_finite")}
        for kind in ERROR_KINDS:
            metrics.ERRORS.labels(session_id, kind)
        self.crashed: str | None = None  # why the loop task ended by itself, if it did

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """(Re)arm and start ticking. Any latched emergency stop is cleared: only an explicit
        start or restart gets here."""
        if self._task is not None and self._task.cancelling():
            # An emergency stop cancelled the task and it has not ended yet: let it end,
            # then tick again (it would otherwise look running and die right after).
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.running:
            self.core.rearm(self._reference())
            self._stop_reason = None
            return
        self.core.rearm(self._reference())
        self._stop_reason = None
        self.crashed = None
        self.outbox.clear()  # nothing from before the stop goes out
        self._task = asyncio.create_task(self._run(), name=f"control-{self.session_id}")
        self._task.add_done_callback(self._on_loop_end)

    def _on_loop_end(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # ticks catch their own errors: this is a bug, not a fault
            self.crashed = f"control loop ended: {type(exc).__name__}: {exc}"
            self.core.latch_stop()
            log.error("session %s: %s", self.session_id, self.crashed, exc_info=exc)
            if self._on_crash is not None:
                self._on_crash(self.crashed)

    async def stop(self) -> None:
        self.core.latch_stop()  # nothing more is published, even before the task ends
        self.outbox.clear()
        tasks = [t for t in (self._task, self._inference) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = self._inference = None

    def emergency_stop(self, reason: str) -> None:
        """Latch synchronously: no await stands between the message and the latch."""
        self.core.latch_stop()
        self.outbox.clear()
        self._stop_reason = f"emergency_stop: {reason}" if reason else "emergency_stop"
        if self._task is not None:
            self._task.cancel()

    def reset(self) -> None:
        """Clear the plan and the joint state (connections stay)."""
        self.core.reset()
        self.mapper.reset()
        self.joint_readings.reset()
        self._chunk_obs = None

    def _reference(self) -> np.ndarray | None:
        """The robot's current position as the step limiter's starting point, when known
        and named like the actions."""
        state = self.mapper.state()
        if state is None or self.contract.state_names != self.contract.action_names:
            return None
        return state

    # -- the loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        if self.settings.tick_scheduler == "per_session":
            await self._run_own_timer()
            return
        # The session's task only drains its outbox; the rate's scheduler ticks it.
        self._grid_offset = None
        with membership(scheduler_for(self.settings.rate_hz), self):
            await self.outbox.run()

    def on_grid_tick(self, g: int, now: float) -> None:
        """The shared scheduler's call for grid tick ``g`` (due at ``g / rate``)."""
        if self._grid_offset is None or self._clock is None:
            # Tick numbers continue across stop/start: the core's ticks only ever increase.
            last = self.core.last_tick if self.core.last_tick is not None else -1
            self._grid_offset = g - (last + 1)
            self._clock = TickClock(self._grid_offset / self.settings.rate_hz,
                                    self.settings.rate_hz)
        self._safe_tick(g - self._grid_offset, now, self._clock)

    def _safe_tick(self, k: int, now: float, clock: TickClock) -> None:
        try:
            self._tick(k, now, clock)
        except Exception as exc:  # one bad tick must not end the session's control
            self.counters.errors["tick"] += 1
            metrics.ERRORS.labels(self.session_id, "tick").inc()
            self.inference_problem = f"tick: {type(exc).__name__}: {exc}"  # until a chunk
            log.exception("session %s: tick %d failed", self.session_id, k)

    def _on_sent(self, command: Mapping[str, float], at: float, sent: bool,
                 source: Any) -> None:
        for observe in self.publish_observers:
            try:  # an observer (bench, console) must not end the session's sending
                observe(command, at, sent, source)
            except Exception:
                log.exception("session %s: publish observer failed", self.session_id)

    async def _run_own_timer(self) -> None:
        loop_clock = time.monotonic
        rate = self.settings.rate_hz
        # Tick numbers continue across stop/start: the core's ticks only ever increase.
        k = self.core.last_tick if self.core.last_tick is not None else -1
        # Ticks sit on a process-wide grid (multiples of the period on the monotonic clock):
        # sessions at the same rate tick together, so their refill requests reach Triton
        # together and its dynamic batcher can merge them.
        first = math.ceil(loop_clock() * rate) / rate
        clock = self._clock = TickClock(first - (k + 1) / rate, rate)
        while True:
            k = clock.next_tick(k, loop_clock())
            delay = clock.deadline(k) - loop_clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self._safe_tick(k, loop_clock(), clock)
            await self.outbox.send_pending()  # this design waits for its own publish

    def _tick(self, k: int, now: float, clock: TickClock) -> None:
        lateness = clock.lateness(k, now)
        self.counters.lateness.append(lateness)
        m = self._m
        m.jitter.observe(abs(lateness))
        freshness = self._freshness(now)
        decision = self.core.on_tick(k, now, freshness)
        self.counters.last_decision = decision
        for event in decision.interventions:
            self.counters.interventions[event.kind] += 1
            self._interventions[event.kind].inc()
            self._warn.log(logging.WARNING, f"{event.kind}:{event.joint}",
                           "session %s: safety %s on joint %s: planned %s, published %s",
                           self.session_id, event.kind, event.joint, event.value, event.published)
        if decision.command is not None:
            command = self.mapper.to_command(decision.command)
            self.outbox.put(command, time.monotonic(), self._chunk_obs)
            self.counters.commands_sent += 1
            m.commands += 1
            if self._last_publish is not None:
                m.period.observe(now - self._last_publish)
            self._last_publish = now
            if self._chunk_obs is not None:
                self.counters.obs_to_command.append(time.monotonic() - self._chunk_obs.oldest_stamp)
        elif decision.underrun:
            m.underruns += 1
        if decision.command is None:
            m.hold(decision.reason.value)
        m.plan = decision.horizon
        if freshness.age is not None:
            m.age = freshness.age
        if decision.request_inference:
            try:
                observation = self._snapshot(k, now)
            except Exception as exc:  # e.g. a decoder error no adapter names
                # The core counts this request as outstanding: it must end (after the
                # backoff), or no chunk would ever be asked again, not even after a restart.
                self._record_failure(exc, "observation_error")
                observation = None
            self._inference = asyncio.create_task(
                self._infer(observation), name=f"infer-{self.session_id}-{k}"
            )

    def _snapshot(self, k: int, now: float) -> Observation | None:
        frames = {c: s.latest() for c, s in self._cameras.items()}
        state, joints_at = observation_state(
            self.joint_readings, self.mapper.state(), frames, now, self.mapper.last_update,
            self._joints_alive(), self.settings)
        observation = self.builder.snapshot(k, now, state, frames, joints_captured_at=joints_at,
                                            camera_latency_s=self.settings.camera_latency_s)
        if refused := refusal(frames, observation, now, self.settings.stale_after_s):
            self._record_failure(StaleObservation(refused[1]), refused[0])
            return None
        return observation

    def on_joints(self, changed: Mapping[str, float]) -> None:
        """A reading from the joint-input room: only the joints that changed (the server
        forwards changes), merged by name into the model's state."""
        at = time.monotonic()
        if self.mapper.update(changed, at).accepted:
            # The room server's forward time when it shares our clock: a busy event loop
            # hands readings over late, and a late stamp would align chunks too late.
            sent = self.joint_stamp() if self.joint_stamp is not None else None
            self.joint_readings.note(at if sent is None else min(sent, at), self.mapper.state())

    def _freshness(self, now: float) -> Any:
        frame_ages: dict[str, float | None] = {}
        for camera, source in self._cameras.items():
            frame_ages[camera] = age_since(now, source.newest_arrival())
        joints_age = None
        if self.mapper.ready:
            # Unchanged joints are not forwarded: a robot still connected is current.
            joints_age = 0.0 if self._joints_alive() else age_since(now, self.mapper.last_update)
        return observation_freshness(frame_ages, joints_age, self.settings.stale_after_s)

    async def _infer(self, observation: Observation | None) -> None:
        try:
            await self._request_chunk(observation)
        except asyncio.CancelledError:
            # A cancelled request (stop, restart) is over: the next start must be free to ask.
            self.core.on_request_failed()
            raise
        except Exception as exc:
            # No adapter names this fault (e.g. OSError: /dev/shm full), or it is a bug. The
            # request is over all the same: left outstanding, no chunk would be asked again.
            self._warn.log(logging.ERROR, "request_crash", "session %s: chunk request failed: "
                           "%s: %s", self.session_id, type(exc).__name__, exc)
            self._record_failure(exc)
            try:
                await asyncio.sleep(self.settings.retry_backoff_s)
            finally:
                self.core.on_request_failed(observation.tick if observation else None)

    async def _request_chunk(self, observation: Observation | None) -> None:
        if observation is None:  # a source vanished between the decision and the snapshot
            await asyncio.sleep(self.settings.retry_backoff_s)
            self.core.on_request_failed()
            return
        k_obs = observation.tick
        started = time.monotonic()
        try:
            if self.builder.needs_resize(observation):
                # Resizing takes milliseconds per frame: keep it off the ticks' event loop.
                inputs = await asyncio.to_thread(self.builder.inputs, observation)
            else:
                inputs = self.builder.inputs(observation)
            output = await self._triton.infer(
                self.policy.name, inputs, version=self.policy.version,
                timeout_s=self.settings.inference_timeout_s,
            )
        except (TritonError, ValueError) as exc:
            self._record_failure(exc)
            await asyncio.sleep(self.settings.retry_backoff_s)
            self.core.on_request_failed(k_obs)
            return
        latency = time.monotonic() - started
        metrics.INFERENCE_LATENCY.labels(self.session_id).observe(latency)
        k_now = self.core.last_tick if self.core.last_tick is not None else k_obs
        self.core.last_chunk_error = None
        aligned = align(observation, self._clock, self.settings.stale_after_s,
                        self.settings.align_to_capture)
        merged = self.core.on_chunk(output[0], k_obs, k_now, latency, align_tick=aligned.tick,
                                    obs_age_s=aligned.age_s, align_source=aligned.source)
        if merged is None and self.core.last_chunk_error:
            # E.g. NaN or inf from the model: nothing of it is published (the plan runs out
            # and the robot holds); the session reports why until a good chunk arrives.
            self.counters.errors["bad_chunk"] += 1
            metrics.ERRORS.labels(self.session_id, "bad_chunk").inc()
            error = self.core.last_chunk_error
            self.inference_problem = f"bad_chunk: model output rejected: {error}"
            self._warn.log(logging.WARNING, "bad_chunk", "session %s: chunk rejected: %s",
                           self.session_id, self.core.last_chunk_error)
            return
        if merged is not None:
            self._chunk_obs = observation
            self.recent_chunks.append((observation, np.array(output[0])))
        if self.inference_problem is not None:
            log.info("session %s: inference recovered (%s)", self.session_id,
                     self.inference_problem)
        self.inference_problem = None

    def _record_failure(self, exc: Exception, kind: str | None = None) -> None:
        kind = kind or failure_kind(exc)
        self.counters.errors[kind] += 1
        metrics.ERRORS.labels(self.session_id, kind).inc()
        self.inference_problem = f"{kind}: {exc}"
        self._warn.log(logging.WARNING, kind, "session %s: %s: %s", self.session_id, kind, exc)

    # -- reporting -----------------------------------------------------------------------
    def problem(self) -> str | None:
        # Some joints read, not all (the RobotHub page sends a joint only once it moves).
        waiting = self.running and not self.mapper.ready and self.mapper.last_update is not None
        return self._stop_reason or self.inference_problem or (
            f"waiting_for_joints: no reading yet of {list(self.mapper.missing)}; a joint is "
            "read once the robot sends it (move each joint once)" if waiting else None)

    def stats(self) -> dict[str, Any]:
        stats = report.loop_stats(self)
        stats["outbox"] = self.outbox.describe()
        return stats

    def inference_stats(self) -> dict[str, Any]:
        return report.inference_stats(self)

    def queue_info(self) -> dict[str, Any]:
        return report.queue_info(self)
