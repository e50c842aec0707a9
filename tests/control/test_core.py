"""ControlCore driven by a simulated time loop: fake latency, late and dropped chunks.

The simulated model answers an observation taken at tick ``k_obs`` with a chunk whose
first value is the tick each action is meant for (``k_obs + i``) and whose second value
is ``k_obs``, so every published command says which tick it was made for.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.control.core import ControlCore, TickDecision
from orchestrator.control.freshness import observation_freshness
from orchestrator.control.plan import BlendMode
from orchestrator.control.reasons import Reason
from orchestrator.control.timing import TickClock

RATE = 30.0
H = 20
WIDE = {"tick": (-1e9, 1e9), "obs": (-1e9, 1e9)}


def tick_chunk(k_obs: int) -> np.ndarray:
    return np.array([[k_obs + i, k_obs] for i in range(H)], dtype=np.float64)


def make_core(blend: BlendMode = "replace", **kwargs: object) -> ControlCore:
    args: dict[str, object] = {"limits": WIDE, "max_step": None, "latency_prior_s": 0.1}
    args.update(kwargs)
    return ControlCore.create(["tick", "obs"], H, RATE, blend=blend, **args)  # type: ignore[arg-type]


@dataclass
class Sim:
    """A deadline-driven loop with a fake inference server (no real time passes)."""

    core: ControlCore
    latency: Callable[[int], float | None]  # request tick -> seconds, None: lost
    lateness: Callable[[int], float] = lambda k: 0.0  # how late the loop wakes for tick k
    fresh: Callable[[int], bool] = lambda k: True
    chunk: Callable[[int], np.ndarray] = tick_chunk
    timeout_s: float = 0.5
    decisions: list[TickDecision] = field(default_factory=list)
    covered: list[bool] = field(default_factory=list)  # did the plan hold the tick?
    max_in_flight: int = 0
    # (arrival time, k_obs, latency or None when lost)
    _events: list[tuple[float, int, float | None]] = field(default_factory=list)

    def run(self, ticks: int) -> None:
        clock = TickClock(0.0, RATE)
        k = -1
        for _ in range(ticks):
            now = clock.next_deadline(k) + self.lateness(k + 1)
            k = clock.next_tick(k, now)
            while self._events and self._events[0][0] <= now:
                _, k_obs, latency = heapq.heappop(self._events)
                if latency is not None:
                    self.core.on_chunk(self.chunk(k_obs), k_obs, k - 1, latency_s=latency)
                else:
                    self.core.on_request_failed(k_obs)
            self.covered.append(self.core.plan.action_for(k) is not None)
            decision = self.core.on_tick(k, now, self.fresh(k))
            self.decisions.append(decision)
            if decision.request_inference:
                lat = self.latency(k)
                due = now + (self.timeout_s if lat is None else lat)
                heapq.heappush(self._events, (due, k, lat))
            self.max_in_flight = max(self.max_in_flight, len(self._events))

    def published(self) -> list[tuple[int, np.ndarray]]:
        return [(d.tick, d.command) for d in self.decisions if d.command is not None]


def test_steady_latency_streams_every_tick_without_underrun() -> None:
    sim = Sim(make_core(), latency=lambda k: 0.08)
    sim.run(300)
    first = next(i for i, d in enumerate(sim.decisions) if d.command is not None)
    assert first <= 4  # the first chunk needs ceil(0.08 * 30) = 3 ticks
    assert all(d.command is not None for d in sim.decisions[first:])
    assert all(d.reason is Reason.WAITING_FOR_CHUNK for d in sim.decisions[:first])
    stats = sim.core.stats()
    assert stats.underruns == 0 and stats.commands == 300 - first
    assert stats.latency.measured and stats.latency.p95 == pytest.approx(0.08)
    assert sim.max_in_flight == 1
    for tick, command in sim.published():
        assert command[0] == tick  # made for the tick it is published at


def test_no_tick_waits_for_inference_and_a_slow_chunk_is_aligned() -> None:
    """One inference takes 0.49 s: the plan is published until it runs out (underrun, never
    a stall), then the late chunk is merged from the current tick on."""
    requests: list[int] = []

    def latency(k: int) -> float:
        requests.append(k)
        return 0.49 if len(requests) == 2 else 0.05

    sim = Sim(make_core(), latency=latency)
    sim.run(120)
    by_tick = {d.tick: d for d in sim.decisions}
    # The 2nd request (tick 13: horizon 6 = ceil(0.1 s prior * 30) + 3) answers just before tick 28;
    # the plan from tick 0 lasts to tick 19.
    assert requests[:2] == [0, 13]
    assert [t for t, d in by_tick.items() if d.underrun] == list(range(20, 28))
    assert all(by_tick[t].command is not None for t in range(2, 20))  # first chunk: tick 2
    underruns = [t for t, d in by_tick.items() if d.underrun]
    assert underruns and all(not sim.covered[t] for t in underruns)
    assert all(by_tick[t].command is not None for t in range(len(sim.covered))
               if sim.covered[t])
    assert sim.core.stats().dropped_past_actions > 0
    for tick, command in sim.published():
        assert command[0] == tick


def test_a_lost_request_is_retried_after_the_timeout() -> None:
    lost = {0}
    sim = Sim(make_core(), latency=lambda k: None if k in lost else 0.05, timeout_s=0.3)
    sim.run(60)
    stats = sim.core.stats()
    assert stats.failed_requests == 1 and stats.chunks >= 1
    requests = [d.tick for d in sim.decisions if d.request_inference]
    assert requests[0] == 0 and requests[1] == 9  # 0.3 s at 30 Hz later
    assert sim.decisions[-1].command is not None


def test_a_failure_for_another_request_changes_nothing() -> None:
    core = make_core()
    core.on_tick(0, 0.0, True)
    core.on_tick(1, 1 / RATE, True)
    assert core.in_flight_tick == 0
    core.on_request_failed(1)  # not the outstanding request
    assert core.in_flight and core.stats().failed_requests == 0
    core.on_request_failed()  # None: the outstanding one, whatever its tick
    assert not core.in_flight and core.stats().failed_requests == 1
    assert core.on_tick(2, 2 / RATE, True).request_inference


def test_stale_observation_stops_refills_and_reports_why() -> None:
    sim = Sim(make_core(), latency=lambda k: 0.05, fresh=lambda k: not 50 <= k < 100)
    sim.run(150)
    by_tick = {d.tick: d for d in sim.decisions}
    assert not any(d.request_inference for t, d in by_tick.items() if 50 <= t < 100)
    # The plan is used up, then the loop holds with the watchdog's reason.
    assert by_tick[51].command is not None
    assert by_tick[99].command is None and by_tick[99].reason is Reason.STALE_OBSERVATION
    assert not by_tick[99].underrun
    assert by_tick[100].request_inference  # resumes by itself
    assert by_tick[149].command is not None


def test_freshness_reasons_pass_through() -> None:
    core = make_core()
    waiting = observation_freshness({"front": None}, None, 0.5)
    decision = core.on_tick(0, 0.0, waiting)
    assert decision.reason is Reason.WAITING_FOR_FRAMES and not decision.request_inference


def test_emergency_stop_latches_until_rearm_and_voids_the_outstanding_chunk() -> None:
    core = make_core()
    assert core.on_tick(0, 0.0, True).request_inference
    core.on_chunk(tick_chunk(0), 0, 0)
    assert core.on_tick(1, 1 / RATE, True).command is not None
    core.on_tick(2, 2 / RATE, True)
    assert core.on_tick(15, 0.5, True).request_inference
    core.latch_stop()
    assert len(core.plan) == 0  # nothing planned before the stop may run after it
    for k in range(16, 20):
        d = core.on_tick(k, k / RATE, True)
        assert d.command is None and d.reason is Reason.EMERGENCY_STOP
        assert not d.request_inference
    assert core.on_chunk(tick_chunk(15), 15, 19) is None  # answer to a pre-stop request
    assert len(core.plan) == 0
    core.rearm()
    d = core.on_tick(20, 20 / RATE, True)
    assert d.command is None and d.reason is Reason.WAITING_FOR_CHUNK and d.request_inference
    core.on_chunk(tick_chunk(20), 20, 20)
    d = core.on_tick(21, 21 / RATE, True)
    assert d.command is not None and d.command[0] == 21


def test_reset_clears_the_plan_and_discards_the_answer_in_flight() -> None:
    core = make_core()
    core.on_tick(0, 0.0, True)
    core.on_chunk(tick_chunk(0), 0, 0)
    for k in range(1, 14):
        d = core.on_tick(k, k / RATE, True)
    assert d.request_inference and d.tick == 13
    core.reset()
    assert len(core.plan) == 0 and core.in_flight
    assert not core.on_tick(14, 14 / RATE, True).request_inference  # still one in flight
    assert core.on_chunk(tick_chunk(13), 13, 14) is None
    assert not core.in_flight and core.stats().discarded_chunks == 1
    assert core.on_tick(15, 15 / RATE, True).request_inference


def test_a_chunk_reported_with_an_old_k_now_still_skips_decided_ticks() -> None:
    core = make_core()
    core.on_tick(0, 0.0, True)
    for k in range(1, 5):
        core.on_tick(k, k / RATE, True)
    core.on_chunk(tick_chunk(0), 0, k_now=1, latency_s=math.nan)  # wrong k_now, bad latency
    assert core.plan.first_tick == 5 and core.stats().latency.samples == 0


def test_an_unexpected_chunk_is_discarded() -> None:
    core = make_core()
    assert core.on_chunk(tick_chunk(3), 3, 4) is None
    assert len(core.plan) == 0 and core.stats().discarded_chunks == 1


@pytest.mark.parametrize("bad", [np.zeros((H, 5)), np.full((H, 2), np.inf)])
def test_a_malformed_chunk_ends_the_request_and_changes_nothing(bad: np.ndarray) -> None:
    core = make_core()
    core.on_tick(0, 0.0, True)
    assert core.on_chunk(bad, 0, 0) is None
    assert not core.in_flight and len(core.plan) == 0
    stats = core.stats()
    assert stats.rejected_chunks == 1 and stats.last_chunk_error
    assert core.on_tick(1, 1 / RATE, True).request_inference


def test_ticks_must_increase() -> None:
    core = make_core()
    core.on_tick(5, 0.0, True)
    with pytest.raises(ValueError, match="increase"):
        core.on_tick(5, 0.1, True)


def test_nan_from_the_model_never_enters_the_plan() -> None:
    """A chunk with NaN is rejected whole: the plan goes on and the next tick asks again."""
    answers: list[int] = []

    def poisoned(k_obs: int) -> np.ndarray:
        answers.append(k_obs)
        chunk = tick_chunk(k_obs)
        if len(answers) == 2:
            chunk[5:8, 1] = math.nan
        return chunk

    sim = Sim(make_core(), latency=lambda k: 0.05, chunk=poisoned)
    sim.run(60)
    stats = sim.core.stats()
    assert stats.rejected_chunks == 1 and "non-finite" in (stats.last_chunk_error or "")
    requests = [d.tick for d in sim.decisions if d.request_inference]
    assert requests[1] + 2 == requests[2]  # re-asked on the tick after the rejection
    assert stats.underruns == 0
    assert all(np.all(np.isfinite(c)) and c[0] == t for t, c in sim.published())


def test_jitter_is_measured_from_tick_times() -> None:
    sim = Sim(make_core(), latency=lambda k: 0.05, lateness=lambda k: 0.004 * (k % 2))
    sim.run(100)
    stats = sim.core.stats()
    assert stats.jitter.samples == 99 and stats.jitter.p50 == pytest.approx(0.004, abs=1e-9)
    assert stats.missed_ticks == 0


def test_a_loop_that_wakes_late_skips_ticks_and_counts_them() -> None:
    sim = Sim(make_core(), latency=lambda k: 0.05, lateness=lambda k: 0.1 if k == 30 else 0.0)
    sim.run(60)
    ticks = [d.tick for d in sim.decisions]
    # Tick 30's wake-up comes 0.1 s (3 periods) late: 30..32 are skipped, not burst out.
    assert ticks[28:31] == [28, 29, 33]
    assert sim.core.stats().missed_ticks == 3
    assert all(d.command is not None and d.command[0] == d.tick for d in sim.decisions[2:])


def test_mismatched_parts_are_rejected() -> None:
    core = make_core()
    with pytest.raises(ValueError):
        ControlCore(core.plan, type(core.safety)(["a"]), core.refill, core.latency, RATE)


# -- the invariants, over random latencies, losses, lateness and blends -------------------
@dataclass(frozen=True)
class Scenario:
    latencies: list[float | None]  # per request tick (None: the request is lost)
    lateness: list[float]  # how late the loop wakes, per tick
    stale: list[bool]  # observation stale at that tick
    blend: BlendMode
    crossfade: int
    margin: int
    replan_every: int | None


N = 150


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    def per_tick(elements: st.SearchStrategy[Any]) -> list[Any]:
        return draw(st.lists(elements, min_size=N, max_size=N))

    stale = per_tick(st.booleans()) if draw(st.booleans()) else [False] * N
    return Scenario(
        latencies=per_tick(st.none() | st.floats(0.0, 0.6)),
        lateness=per_tick(st.floats(0.0, 0.1)),
        stale=stale,
        blend=draw(st.sampled_from(["crossfade", "ensemble", "replace"])),
        crossfade=draw(st.integers(1, 12)),
        margin=draw(st.integers(0, 6)),
        replan_every=draw(st.none() | st.integers(1, 15)),
    )


@settings(deadline=None, max_examples=60)
@given(sc=scenarios())
def test_simulated_loop_invariants(sc: Scenario) -> None:
    core = make_core(sc.blend, crossfade_ticks=sc.crossfade, margin_ticks=sc.margin,
                     replan_every=sc.replan_every)
    sim = Sim(core, latency=lambda k: sc.latencies[k % N],
              lateness=lambda k: sc.lateness[k % N], fresh=lambda k: not sc.stale[k % N])
    sim.run(N)
    assert sim.max_in_flight <= 1  # at most one request per session in flight
    ticks = [d.tick for d in sim.decisions]
    assert ticks == sorted(set(ticks))  # each tick decided once, in order
    for decision, covered in zip(sim.decisions, sim.covered, strict=True):
        # A tick publishes exactly when the plan holds it: nothing waits for inference.
        assert (decision.command is not None) == covered
        assert decision.underrun <= (not covered)
        if decision.command is not None:
            # Blends of actions for the same tick: still exactly that tick.
            assert decision.command[0] == pytest.approx(decision.tick, abs=1e-6)
            assert decision.command[1] <= decision.tick  # from an observation not later
        if decision.request_inference:
            assert not sc.stale[decision.tick % N]  # never from a stale observation


@settings(deadline=None, max_examples=40)
@given(
    latencies=st.lists(st.floats(0.0, 0.4), min_size=1, max_size=20),
    blend=st.sampled_from(["crossfade", "ensemble", "replace"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_published_stream_respects_limits_and_max_step_whatever_the_model_says(
    latencies: list[float], blend: BlendMode, seed: int
) -> None:
    rng = np.random.default_rng(seed)

    def wild(k_obs: int) -> np.ndarray:
        chunk = rng.normal(0, 300, size=(H, 3))
        if rng.random() < 0.2:
            chunk[rng.integers(H), rng.integers(3)] = math.nan
        return chunk

    core = ControlCore.create(["a", "b", "gripper"], H, RATE, blend=blend, max_step=7.0)
    sim = Sim(core, latency=lambda k: latencies[k % len(latencies)], chunk=wild)
    sim.run(150)
    assert sim.published()
    previous = None
    for _, command in sim.published():
        assert np.all(np.isfinite(command))
        assert np.all(command >= [-100, -100, 0]) and np.all(command <= 100)
        if previous is not None:
            assert np.all(np.abs(command - previous) <= 7.0 + 1e-9)
        previous = command
