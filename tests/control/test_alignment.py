"""Observation-time alignment: a chunk that continues the past exactly (a ramp from the
observed position) never makes the published stream step back at its merge, whatever the
inference latency and the frame's age, with every blend. A closed loop in pure code: the
robot executes each command half a period after its tick (the command path's delay, for
which the nearest-tick rule is exact: the tick nearest the capture is the one after the
last command the arm had executed) and the camera sees it there.

"The past" is the stream between the capture and the merge, and the plan ahead: when it
was no ramp (a hold at the start or when the plan ran dry, or the seam of an earlier such
chunk, published or still planned), a chunk that continues the older position cannot
continue the stream too, and a blend inherits what the plan held. Such merges are
reported as unclean and left out (a startup jump can even keep recurring when the latency
locks the captures onto the seams).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.control.alignment import (
    AlignmentTracker,
    frame_capture_moment,
    joint_capture_moment,
    nearest_tick,
    observation_tick,
)
from orchestrator.control.core import ControlCore
from orchestrator.control.plan import BLEND_MODES

PROPS = settings(deadline=None, max_examples=80)


@dataclass(frozen=True)
class Loop:
    rate: float
    chunk: int
    velocity: float  # units per second, > 0: the arm only ever moves forward
    latencies: tuple[float, ...]  # seconds, cycled over the requests
    ages: tuple[float, ...]  # frame age at the snapshot, seconds, cycled
    blend: str
    replan_every: int | None
    aligned: bool = True


@dataclass
class Run:
    published: list[tuple[int, float]]
    merges: list[int]  # the first tick each chunk could change
    unclean_merges: list[int]  # those whose past was no ramp


def run_loop(sc: Loop, ticks: int = 160) -> list[tuple[int, float]]:
    return run_closed_loop(sc, ticks).published


def run_closed_loop(sc: Loop, ticks: int = 160) -> Run:
    """(tick, command) for every published tick of the closed loop."""
    core = ControlCore.create(["j"], sc.chunk, sc.rate, blend=sc.blend,  # type: ignore[arg-type]
                              replan_every=sc.replan_every, latency_prior_s=0.05,
                              max_step=None, limits={"j": (-1e9, 1e9)})
    published: list[tuple[int, float]] = []
    pending: list[tuple[float, int, np.ndarray, int, float]] = []  # due, k_req, chunk, align
    requests = 0
    unclean: list[int] = []
    merges: list[int] = []

    def position(moment: float) -> float:
        # The arm is where the last command it had executed by `moment` put it.
        done = [c for k, c in published if (k + 0.5) / sc.rate <= moment + 1e-12]
        return done[-1] if done else 0.0

    for k in range(ticks):
        now = k / sc.rate
        for item in [p for p in pending if p[0] <= now]:
            pending.remove(item)
            due, k_req, chunk, align, age = item
            # The stream from the last command the arm had executed at capture up to now.
            last = nearest_tick(k_req / sc.rate - age, 0.0, sc.rate) - 1
            seen = dict(published)
            past = [seen.get(t) for t in range(last, k)]
            per_tick = sc.velocity / sc.rate
            ramp = last >= 0 and all(
                a is not None and b is not None and abs(b - a - per_tick) <= 1e-9 * max(1, abs(b))
                for a, b in itertools.pairwise(past)) and past[-1:] != [None]
            # ...and the plan ahead continues it (else a blend inherits the plan's own seam).
            if ramp and past and core.plan.snapshot():
                base_k, base_v = k - 1, past[-1]
                ramp = all(abs(v[0] - base_v - (t - base_k) * per_tick) <= 1e-9 * max(1, abs(v[0]))
                           for t, v in core.plan.snapshot())
            if not ramp:
                unclean.append(k)
            merges.append(k)
            core.on_chunk(chunk, k_req, k - 1, due - k_req / sc.rate,
                          align_tick=align if sc.aligned else None, obs_age_s=age)
        decision = core.on_tick(k, now, True)
        if decision.command is not None:
            published.append((k, float(decision.command[0])))
        if decision.request_inference:
            age = sc.ages[requests % len(sc.ages)]
            latency = sc.latencies[requests % len(sc.latencies)]
            requests += 1
            captured = now - age
            base = position(captured)
            chunk = (base + np.arange(1, sc.chunk + 1) * sc.velocity / sc.rate)[:, None]
            align = observation_tick([captured], k, 0.0, sc.rate, max_offset_ticks=10**6)
            pending.append((now + latency, k, chunk, align, age))
    return Run(published, merges, unclean)


def steps(published: list[tuple[int, float]]) -> list[float]:
    return [b - a for (_, a), (_, b) in itertools.pairwise(published)]


loops = st.builds(
    Loop,
    rate=st.sampled_from([10.0, 30.0, 50.0]),
    chunk=st.integers(8, 60),
    velocity=st.floats(0.5, 50.0),
    latencies=st.lists(st.floats(0.0, 1.2), min_size=1, max_size=4).map(tuple),
    ages=st.lists(st.floats(0.0, 0.4), min_size=1, max_size=4).map(tuple),
    blend=st.sampled_from(BLEND_MODES),
    replan_every=st.one_of(st.none(), st.integers(1, 12)),
).filter(
    # A capture exactly half a tick from two ticks (age 0.05 s at 10 Hz) may align to either,
    # as floating point rounds it, and this oracle's own rounding need not agree: the chunk
    # then lands one tick off (a step of 0 or 2 ramp steps at the merge, measured), which is
    # the alignment's half-tick quantization, not a seam. A hair either side the properties
    # hold; ties are left out.
    lambda sc: all(abs((age * sc.rate) % 1.0 - 0.5) > 1e-6 for age in sc.ages)
)


@PROPS
@given(loops)
def test_an_exact_continuation_never_steps_back_at_a_merge(sc: Loop) -> None:
    run = run_closed_loop(sc)
    published = run.published
    tolerance = 1e-9 * max(1.0, abs(published[-1][1])) if published else 0.0
    merges = set(run.merges) - set(run.unclean_merges)
    backtracks = [(ka, kb) for (ka, a), (kb, b) in itertools.pairwise(published)
                  if kb in merges and b - a < -tolerance]
    assert not backtracks, (backtracks[:5], run.unclean_merges, sc)


@settings(deadline=None, max_examples=40)
@given(loops.map(lambda sc: Loop(**{**sc.__dict__, "blend": "replace"})))
def test_an_aligned_stream_keeps_the_ramps_speed_at_every_clean_merge(sc: Loop) -> None:
    """No jump forward either: with replace, the step at a clean merge is the ramp's own
    (the other blends mix in what the plan held, which may carry an older seam)."""
    run = run_closed_loop(sc)
    per_tick = sc.velocity / sc.rate
    merges = set(run.merges) - set(run.unclean_merges)
    bad = [(ka, kb) for (ka, a), (kb, b) in zip(run.published, run.published[1:], strict=False)
           if kb in merges and kb == ka + 1 and abs(b - a - per_tick) > 1e-9 * max(1.0, abs(b))]
    assert not bad, (bad[:5], sc)


def test_snapshot_alignment_replays_the_past_and_steps_back() -> None:
    """The failure the alignment fixes: frames 100 ms old, chunk aligned on the snapshot."""
    sc = Loop(rate=30.0, chunk=30, velocity=10.0, latencies=(0.05,), ages=(0.1,),
              blend="replace", replan_every=None, aligned=False)
    assert min(steps(run_loop(sc))) < 0
    assert min(steps(run_loop(Loop(**{**sc.__dict__, "aligned": True})))) >= 0


# -- the pure helpers ---------------------------------------------------------------------
def test_nearest_tick_rounds_to_the_nearest_due_time() -> None:
    assert nearest_tick(1.0, 0.0, 30.0) == 30
    assert nearest_tick(1.0 + 0.49 / 30, 0.0, 30.0) == 30
    assert nearest_tick(1.0 + 0.51 / 30, 0.0, 30.0) == 31
    assert nearest_tick(-0.2, 0.0, 10.0) == -2
    with pytest.raises(ValueError):
        nearest_tick(math.nan, 0.0, 30.0)
    with pytest.raises(ValueError):
        nearest_tick(1.0, 0.0, 0.0)


@given(st.lists(st.floats(-10, 10), max_size=5), st.integers(-100, 100), st.integers(0, 50))
def test_observation_tick_is_the_oldest_part_clamped(moments: list[float], snap: int,
                                                     bound: int) -> None:
    k = observation_tick(moments, snap, 0.0, 30.0, bound)
    assert snap - bound <= k <= snap
    if moments:
        expected = nearest_tick(min(moments), 0.0, 30.0)
        assert k == max(snap - bound, min(snap, expected))
    else:
        assert k == snap


def test_capture_moments() -> None:
    assert frame_capture_moment(10.0, 9.93, 0.2) == 9.93  # the stream's own timing wins
    assert frame_capture_moment(10.0, 10.5, None) == 10.0  # never after the arrival
    assert frame_capture_moment(10.0, None, 0.15) == pytest.approx(9.85)
    assert frame_capture_moment(10.0, None, None) == 10.0
    assert joint_capture_moment(10.0, None, 0.1) is None
    assert joint_capture_moment(10.0, 9.95, 0.1) == 9.95
    assert joint_capture_moment(10.0, 9.0, 0.1) == 10.0  # still arm: current
    with pytest.raises(ValueError):
        observation_tick([1.0], 0, 0.0, 30.0, -1)


def test_tracker_reports_ticks_and_ms() -> None:
    tracker = AlignmentTracker()
    assert tracker.stats().samples == 0 and tracker.stats().ticks_p50 is None
    for i in range(10):
        tracker.add(i % 3, 0.1, "stream")
    stats = tracker.stats()
    assert stats.samples == 10 and stats.ticks_p50 == 1.0 and stats.ms_p50 == 100.0
    assert stats.source == "stream"


def test_snapshot_alignment_steps_back_at_clean_merges_too() -> None:
    sc = Loop(rate=30.0, chunk=40, velocity=5.0, latencies=(0.03, 0.07), ages=(0.12, 0.05),
              blend="crossfade", replan_every=None, aligned=False)
    run = run_closed_loop(sc)
    clean = set(run.merges) - set(run.unclean_merges)
    seen = dict(run.published)
    assert any(k in seen and k - 1 in seen and seen[k] < seen[k - 1] for k in clean)


def test_a_still_robot_that_sent_one_reading_is_current_while_connected() -> None:
    """The room forwards changes only: one reading, then silence, from a robot still
    connected as the room's producer, is its state now, not seconds ago."""
    from orchestrator.control.alignment import joint_capture_moment

    assert joint_capture_moment(10.0, 2.0, None, producer_connected=True) == 10.0
    assert joint_capture_moment(10.0, 2.0, None, producer_connected=False) == 2.0
    assert joint_capture_moment(10.0, 9.99, 0.033, producer_connected=True) == 9.99
    assert joint_capture_moment(10.0, None, None, producer_connected=True) is None
