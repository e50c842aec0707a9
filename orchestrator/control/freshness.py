"""Observation watchdog: is the latest observation fresh enough to ask the model?

Ages are seconds since each source last delivered (None: never delivered). The session
computes them from its own monotonic stamps; nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.control.reasons import Reason

JOINTS = "joints"  # the source name of the joint state in `Freshness.stale_sources`


@dataclass(frozen=True)
class Freshness:
    fresh: bool
    reason: Reason  # OK, WAITING_FOR_FRAMES, WAITING_FOR_JOINTS or STALE_OBSERVATION
    waiting: tuple[str, ...] = ()  # sources that never delivered
    stale_sources: tuple[str, ...] = ()  # sources older than max_age
    age: float | None = None  # age of the oldest source that did deliver


def age_since(now: float, stamp: float | None) -> float | None:
    """Seconds since ``stamp`` (None stays None). A stamp from the future counts as 0."""
    return None if stamp is None else max(0.0, now - stamp)


def observation_freshness(
    frame_ages: Mapping[str, float | None],
    joints_age: float | None,
    max_age: float,
    joints_max_age: float | None = None,
) -> Freshness:
    """Fresh only when every camera has delivered within ``max_age`` and the joint state
    within ``joints_max_age`` (default: ``max_age``).

    ``joints_max_age=math.inf`` only requires a reading: an Arena room forwards a joint
    only when its value changes, so an arm holding still sends nothing, and its state is
    current although old. Missing sources are reported before stale ones: "waiting" is the
    normal start-up state, "stale" means a source went quiet. A NaN age counts as stale.
    """
    if not math.isfinite(max_age) or max_age <= 0:
        raise ValueError(f"max_age must be finite and > 0, got {max_age}")
    joints_limit = max_age if joints_max_age is None else joints_max_age
    if math.isnan(joints_limit) or joints_limit <= 0:
        raise ValueError(f"joints_max_age must be > 0, got {joints_max_age}")
    if JOINTS in frame_ages:
        raise ValueError(f"a camera cannot be called {JOINTS!r}")
    # The usual case at every tick (all delivered, all recent): the same answer as the full
    # report below, without building it.
    if joints_age is not None and joints_age <= joints_limit:
        oldest_age: float = joints_age
        for age in frame_ages.values():
            if age is None or not age <= max_age:
                break
            oldest_age = max(oldest_age, age)
        else:
            return Freshness(True, Reason.OK, (), (), oldest_age)
    ages: dict[str, float | None] = {**frame_ages, JOINTS: joints_age}
    limits = {name: max_age for name in frame_ages} | {JOINTS: joints_limit}
    waiting = tuple(name for name, age in ages.items() if age is None)
    known = [age for age in ages.values() if age is not None]
    oldest = max(known, key=lambda a: a if math.isfinite(a) else math.inf, default=None)
    stale = tuple(name for name, age in ages.items()
                  if age is not None and not age <= limits[name])  # `not <=` catches NaN
    if any(name != JOINTS for name in waiting):
        return Freshness(False, Reason.WAITING_FOR_FRAMES, waiting, stale, oldest)
    if waiting:
        return Freshness(False, Reason.WAITING_FOR_JOINTS, waiting, stale, oldest)
    if stale:
        return Freshness(False, Reason.STALE_OBSERVATION, (), stale, oldest)
    return Freshness(True, Reason.OK, (), (), oldest)
