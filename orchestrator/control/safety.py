"""The last gate before a command leaves: joint limits, max step per tick, non-finite
values and the emergency-stop latch.

Guarantee: every published command is finite, inside the joint limits, and (once there
is a previous command) within ``max_step`` of it on every joint. Because the step clamp
moves from a point inside the limits towards a point inside the limits, it can never
push a joint back out of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from orchestrator.control.reasons import Reason

InterventionKind = Literal["limit", "step", "non_finite"]

# The normalized convention of LeRobot SO-100/SO-101 datasets.
ARM_LIMITS = (-100.0, 100.0)
GRIPPER_LIMITS = (0.0, 100.0)
# 10 units/tick is 300 units/s at 30 Hz: a full -100..100 sweep in ~0.7 s. Faster than a
# trained ACT policy moves an SO-100 arm, slow enough to stop a runaway jump in one tick.
DEFAULT_MAX_STEP = 10.0


def default_limits(joint_name: str) -> tuple[float, float]:
    return GRIPPER_LIMITS if "gripper" in joint_name.lower() else ARM_LIMITS


@dataclass(frozen=True)
class Intervention:
    """One change the safety layer made to one joint of one command."""

    joint: str
    kind: InterventionKind
    value: float  # what the plan asked for (after the limit clamp for "step")
    published: float | None  # what went out instead; None when the command was held


@dataclass(frozen=True)
class SafeCommand:
    """The command to publish (None: publish nothing, the robot holds its last one)."""

    values: np.ndarray | None
    reason: Reason
    interventions: tuple[Intervention, ...] = ()


@dataclass
class InterventionCounts:
    clamped_limit: dict[str, int] = field(default_factory=dict)
    clamped_step: dict[str, int] = field(default_factory=dict)
    non_finite: int = 0  # commands held because they held NaN or inf
    held_latched: int = 0  # ticks that published nothing because of the emergency stop

    def as_dict(self) -> dict[str, object]:
        return {
            "clamped_limit": dict(self.clamped_limit),
            "clamped_step": dict(self.clamped_step),
            "non_finite": self.non_finite,
            "held_latched": self.held_latched,
        }


class SafetyLayer:
    """Filters one action per tick into the command to publish."""

    def __init__(
        self,
        joint_names: Sequence[str],
        limits: Mapping[str, tuple[float, float]] | None = None,
        max_step: float | Mapping[str, float] | None = DEFAULT_MAX_STEP,
    ) -> None:
        names = tuple(joint_names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"joint_names must be non-empty and unique, got {list(names)}")
        self.joint_names = names
        limits = dict(limits or {})
        unknown = sorted(set(limits) - set(names))
        if unknown:
            raise ValueError(f"limits name unknown joints {unknown}; joints are {list(names)}")
        pairs = [limits.get(n, default_limits(n)) for n in names]
        for name, (lo, hi) in zip(names, pairs, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"limits for {name!r} must be finite with lo <= hi, got "
                                 f"({lo}, {hi})")
        self.lo = np.array([p[0] for p in pairs], dtype=np.float64)
        self.hi = np.array([p[1] for p in pairs], dtype=np.float64)
        self.max_step = self._steps(max_step)
        # The per-tick path works on Python floats: a handful of joints costs less so than
        # a dozen numpy calls on 6-element arrays (each one microseconds, every tick).
        self._bounds = list(zip(self.lo.tolist(), self.hi.tolist(), strict=True))
        self._steps_list = None if self.max_step is None else self.max_step.tolist()
        self.counts = InterventionCounts()
        self._last: list[float] | None = None
        self._latched = False

    def _steps(self, max_step: float | Mapping[str, float] | None) -> np.ndarray | None:
        if max_step is None:
            return None
        if isinstance(max_step, Mapping):
            unknown = sorted(set(max_step) - set(self.joint_names))
            if unknown:
                raise ValueError(f"max_step names unknown joints {unknown}")
            vals = [float(max_step.get(n, math.inf)) for n in self.joint_names]
        else:
            vals = [float(max_step)] * len(self.joint_names)
        if any(math.isnan(v) or v <= 0 for v in vals):
            raise ValueError(f"max_step must be > 0 per joint, got {vals}")
        return np.array(vals, dtype=np.float64)

    @property
    def latched(self) -> bool:
        return self._latched

    @property
    def last_command(self) -> np.ndarray | None:
        return None if self._last is None else np.array(self._last, dtype=np.float64)

    def latch_stop(self) -> None:
        """Emergency stop: publish nothing until ``rearm``."""
        self._latched = True

    def rearm(self, reference: np.ndarray | None = None) -> None:
        """Leave the emergency stop. ``reference`` (the robot's current position, if known)
        becomes the previous command, so the first command is step-limited from where the
        arm is; without it the first command is only limit-clamped (there is nothing to
        step from)."""
        ref = None
        if reference is not None:
            ref = np.asarray(reference, dtype=np.float64)
            if ref.shape != self.lo.shape or not np.all(np.isfinite(ref)):
                raise ValueError(f"reference must be {len(self.lo)} finite values")
            ref = np.clip(ref, self.lo, self.hi)
        self._last = None if ref is None else ref.tolist()
        self._latched = False

    def filter(self, action: np.ndarray | None) -> SafeCommand:
        """The command to publish for this tick's ``action`` (None: nothing planned)."""
        if self._latched:
            self.counts.held_latched += 1
            return SafeCommand(None, Reason.EMERGENCY_STOP)
        if action is None:
            return SafeCommand(None, Reason.NO_ACTION)
        target = np.asarray(action, dtype=np.float64)
        if target.shape != self.lo.shape:
            raise ValueError(f"action must have {len(self.lo)} values, got shape "
                             f"{list(target.shape)}")
        values: list[float] = target.tolist()
        if not all(map(math.isfinite, values)):
            # Hold the whole command: publishing the finite joints alone would move the
            # arm into a pose no chunk proposed.
            self.counts.non_finite += 1
            held = tuple(Intervention(self.joint_names[i], "non_finite", v, None)
                         for i, v in enumerate(values) if not math.isfinite(v))
            return SafeCommand(None, Reason.NON_FINITE, held)
        # min(max(v, lo), hi) written with comparisons (no builtin call per joint).
        limited = [v if lo <= v <= hi else lo if v < lo else hi
                   for v, (lo, hi) in zip(values, self._bounds, strict=True)]
        events: list[Intervention] = []
        if limited != values:
            for i, (v, w) in enumerate(zip(values, limited, strict=True)):
                if v != w:
                    self._count(self.counts.clamped_limit, i)
                    events.append(Intervention(self.joint_names[i], "limit", v, w))
        out = limited
        steps, last = self._steps_list, self._last
        if steps is not None and last is not None:
            out = [v if p - d <= v <= p + d else p - d if v < p - d else p + d
                   for v, p, d in zip(limited, last, steps, strict=True)]
            if out != limited:
                for i, (v, w) in enumerate(zip(limited, out, strict=True)):
                    if v != w:
                        self._count(self.counts.clamped_step, i)
                        events.append(Intervention(self.joint_names[i], "step", v, w))
        self._last = out
        return SafeCommand(np.array(out, dtype=np.float64), Reason.OK, tuple(events))

    def _count(self, table: dict[str, int], index: int) -> None:
        name = self.joint_names[index]
        table[name] = table.get(name, 0) + 1
