"""The published stream of a ControlCore under any interleaving of ticks, chunks (any
values: huge, NaN, inf, wrong shape), failures, staleness, emergency stops, re-arms with a
reference position and resets: every command is finite, inside the limits, within max step
of the previous command (or of the reference after a re-arm), never published while
latched, and never from a tick the chunk did not plan."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from orchestrator.control.core import ControlCore

JOINTS = ["shoulder_pan", "elbow_flex", "gripper"]
H = 8
LIMITS = {"shoulder_pan": (-30.0, 30.0)}
LO = np.array([-30.0, -100.0, 0.0])
HI = np.array([30.0, 100.0, 100.0])
SHAPE = (H, len(JOINTS))
FINITE = arrays(np.float64, SHAPE, elements=st.floats(-1e4, 1e4))
WILD = arrays(np.float64, SHAPE,
              elements=st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1e3, 1e3))



@st.composite
def scripts(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Ticks (mostly fresh), each followed by what may happen before the next one."""
    out: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 120))):
        out.append(("tick", draw(st.integers(0, 9)) > 1))
        what = draw(st.sampled_from(["none"] * 8 + ["chunk"] * 7 + ["fail", "latch", "rearm",
                                                                     "rearm", "reset",
                                                                     "bad_shape"]))
        if what == "chunk":
            out.append(("chunk", draw(WILD if draw(st.integers(0, 4)) == 0 else FINITE)))
        elif what == "rearm":
            out.append(("rearm", draw(st.none() | arrays(np.float64, (len(JOINTS),),
                                                         elements=st.floats(-500, 500)))))
        elif what == "bad_shape":
            out.append(("bad_shape", draw(st.integers(1, 4))))
        elif what != "none":
            out.append((what, None))
    return out


@settings(deadline=None, max_examples=150)
@given(script=scripts(),
       max_step=st.floats(0.5, 40.0))
def test_published_stream_is_always_safe(script: list[tuple[str, object]],
                                         max_step: float) -> None:
    core = ControlCore.create(JOINTS, H, 30.0, limits=LIMITS, max_step=max_step,
                              latency_prior_s=0.05)
    k = -1
    previous: np.ndarray | None = None  # what the step limit measures from
    latched = False
    planned_from: dict[int, int] = {}  # tick -> observation tick of an accepted chunk
    for kind, arg in script:
        if kind == "tick":
            k += 1
            decision = core.on_tick(k, k / 30.0, bool(arg))
            if decision.command is None:
                continue
            command = decision.command
            assert not latched, "published while latched"
            assert np.all(np.isfinite(command))
            assert np.all(command >= LO) and np.all(command <= HI)
            if previous is not None:
                assert np.all(np.abs(command - previous) <= max_step * (1 + 1e-9) + 1e-9)
            assert k in planned_from and planned_from[k] <= k  # a planned, not past, tick
            previous = command
        elif kind in ("chunk", "bad_shape"):
            k_obs = core.in_flight_tick
            if k_obs is None:
                continue
            chunk = np.asarray(arg) if kind == "chunk" else np.zeros((H, int(arg)))  # type: ignore[call-overload]
            merged = core.on_chunk(chunk, k_obs, max(k, 0), 0.01)
            if merged is not None:
                assert not latched
                assert np.all(np.isfinite(chunk))  # NaN or inf never enters the plan
                for i in range(H):
                    if k_obs + i > k:
                        planned_from[k_obs + i] = k_obs
        elif kind == "fail":
            core.on_request_failed()
        elif kind == "latch":
            core.latch_stop()
            latched = True
        elif kind == "rearm":
            core.rearm(None if arg is None else np.asarray(arg))
            latched = False
            planned_from.clear()  # the plan starts empty
            previous = None if arg is None else np.clip(np.asarray(arg), LO, HI)
        elif kind == "reset":
            core.reset()
            planned_from.clear()
    assert math.isfinite(core.stats().horizon)
