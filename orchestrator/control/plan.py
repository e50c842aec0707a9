"""The plan: a timeline of future actions indexed by tick, fed by action chunks.

A chunk computed from the observation taken at tick ``k_obs`` proposes ``a[i]`` for tick
``k_obs + i``. ``merge`` aligns it on ``k_now`` (the last tick already published), blends
it with what the plan already holds and trims the plan to ``max_ahead`` ticks.

Blends, for a tick covered by both the plan (``old``) and the chunk (``a[i]``):
* crossfade: ``(1 - w) * old + w * a[i]`` with ``w = min(1, (i + 1) / L)``; ``L`` is
  ``crossfade_ticks``, shortened to the old plan's remaining length from ``k_obs`` so the
  fade always completes before the old plan ends. With ``crossfade_anchor="merge"`` the
  fade starts instead on the first overlapping tick still ahead (``w = 1/L`` there):
  smoother when chunks disagree and arrive late (with observation-time alignment most of
  an observation-anchored fade lies in the past), at the price of depending on lateness.
* ensemble: weighted mean of every proposal for the tick, proposal ``j`` (0 = oldest)
  weighing ``exp(-m * j)`` (ACT's temporal ensembling).
* replace: ``a[i]``.
Every blend depends only on the chunks, their ``k_obs`` and their order, never on how
late they arrived (beyond the dropped past).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

BlendMode = Literal["crossfade", "ensemble", "replace"]
BLEND_MODES: tuple[BlendMode, ...] = ("crossfade", "ensemble", "replace")
CrossfadeAnchor = Literal["observation", "merge"]


@dataclass(frozen=True)
class MergeResult:
    """What one merge did, for stats and debug."""

    dropped_past: int  # chunk actions whose tick had already been published
    added: int  # ticks the plan did not cover yet
    blended: int  # ticks covered by both the plan and the chunk
    trimmed: int  # ticks beyond k_now + max_ahead


@dataclass
class _Slot:
    value: np.ndarray
    weight_sum: float  # ensemble only: sum of the weights of all proposals so far
    proposals: int  # how many chunks proposed an action for this tick


class Plan:
    """Future actions by tick. Not thread-safe; one per session."""

    def __init__(
        self,
        action_dim: int,
        max_ahead: int,
        blend: BlendMode = "crossfade",
        crossfade_ticks: int = 10,
        ensemble_m: float = 0.01,
        crossfade_anchor: CrossfadeAnchor = "observation",
    ) -> None:
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        if max_ahead < 1:
            raise ValueError(f"max_ahead must be >= 1, got {max_ahead}")
        if blend not in BLEND_MODES:
            raise ValueError(f"blend must be one of {BLEND_MODES}, got {blend!r}")
        if crossfade_ticks < 1:
            raise ValueError(f"crossfade_ticks must be >= 1, got {crossfade_ticks}")
        if not math.isfinite(ensemble_m) or ensemble_m < 0:
            raise ValueError(f"ensemble_m must be finite and >= 0, got {ensemble_m}")
        if crossfade_anchor not in ("observation", "merge"):
            raise ValueError(f"crossfade_anchor must be observation or merge, got "
                             f"{crossfade_anchor!r}")
        self.crossfade_anchor: CrossfadeAnchor = crossfade_anchor
        self.action_dim = action_dim
        self.max_ahead = max_ahead
        self.blend: BlendMode = blend
        self.crossfade_ticks = crossfade_ticks
        self.ensemble_m = ensemble_m
        self._slots: dict[int, _Slot] = {}  # kept sorted by tick (insertion order)

    # -- queries -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slots)

    @property
    def first_tick(self) -> int | None:
        return next(iter(self._slots), None)

    @property
    def last_tick(self) -> int | None:
        return next(reversed(self._slots), None)

    def horizon(self, k_now: int) -> int:
        """Ticks the plan still covers after ``k_now`` (its last tick minus ``k_now``)."""
        last = self.last_tick
        return 0 if last is None else max(0, last - k_now)

    def action_for(self, k: int) -> np.ndarray | None:
        """The action planned for tick ``k`` (a copy), or None; changes nothing."""
        slot = self._slots.get(k)
        return None if slot is None else slot.value.copy()

    def snapshot(self) -> list[tuple[int, list[float]]]:
        """(tick, action) pairs in tick order, JSON-friendly, for debug endpoints."""
        return [(k, s.value.tolist()) for k, s in self._slots.items()]

    # -- updates -----------------------------------------------------------------------
    def pop(self, k: int) -> np.ndarray | None:
        """Take the action for tick ``k`` (None: underrun) and forget every tick <= ``k``."""
        slot = self._slots.get(k)
        self.drop_through(k)
        return None if slot is None else slot.value

    def drop_through(self, k: int) -> int:
        """Forget every tick <= ``k``; returns how many were dropped."""
        stale = []
        for t in self._slots:  # in tick order: stop at the first one ahead
            if t > k:
                break
            stale.append(t)
        for t in stale:
            del self._slots[t]
        return len(stale)

    def clear(self) -> None:
        self._slots.clear()

    def merge(self, chunk: np.ndarray, k_obs: int, k_now: int) -> MergeResult:
        """Align ``chunk`` ([H, action_dim], ``a[i]`` for tick ``k_obs + i``) on ``k_now``,
        blend it into the plan and trim. A bad shape or a non-finite value raises ValueError
        and changes nothing."""
        arr = np.asarray(chunk, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != self.action_dim:
            raise ValueError(
                f"chunk must have shape [H>=1, {self.action_dim}], got {list(arr.shape)}"
            )
        if not np.all(np.isfinite(arr)):
            # One NaN would poison every blend it enters (0 * NaN is NaN), for many ticks.
            raise ValueError("chunk has non-finite values (NaN or inf)")
        self.drop_through(k_now)  # the plan never holds a tick that has been published
        start = max(0, k_now + 1 - k_obs)  # a[i] with k_obs + i <= k_now is in the past
        limit = k_now + self.max_ahead
        added = blended = trimmed = 0
        # The fade's first index: a[0] (the observation), or the first tick both cover ahead.
        first = 0
        if self.crossfade_anchor == "merge":
            first = next((i for i in range(start, arr.shape[0]) if k_obs + i in self._slots),
                         start)
        ramp = self._ramp_length(k_obs + first)
        merged = dict(self._slots)
        for i in range(start, arr.shape[0]):
            tick = k_obs + i
            if tick > limit:
                trimmed += 1
                continue
            new = arr[i]
            old = merged.get(tick)
            if old is None:
                merged[tick] = _Slot(new.copy(), 1.0, 1)
                added += 1
                continue
            merged[tick] = self._blend(old, new, i - first, ramp)
            blended += 1
        # Old ticks are never beyond the limit: they were merged with an earlier k_now.
        self._slots = {t: merged[t] for t in sorted(merged)}
        return MergeResult(dropped_past=min(start, arr.shape[0]), added=added,
                           blended=blended, trimmed=trimmed)

    def _ramp_length(self, k_obs: int) -> int:
        """Crossfade length for a chunk observed at ``k_obs``: ``crossfade_ticks``, cut short
        so that the ramp reaches 1 on the old plan's last tick (there is nothing to fade
        from after it, and an unfinished fade would end in a jump)."""
        last = self.last_tick
        if last is None or last < k_obs:
            return self.crossfade_ticks
        return max(1, min(self.crossfade_ticks, last - k_obs + 1))

    def _blend(self, old: _Slot, new: np.ndarray, index: int, ramp: int) -> _Slot:
        if self.blend == "replace":
            return _Slot(new.copy(), 1.0, old.proposals + 1)
        if self.blend == "crossfade":
            # The ramp is anchored on the observation's tick (a[0]), not on the first tick
            # still ahead: the part that fell into the past is gone with the past, so the
            # value at a tick does not depend on how late the chunk arrived.
            w = min(1.0, (index + 1) / ramp)
            return _Slot((1.0 - w) * old.value + w * new, 1.0, old.proposals + 1)
        # ACT temporal ensembling: proposal j (0 = oldest) weighs exp(-m * j).
        w = math.exp(-self.ensemble_m * old.proposals)
        total = old.weight_sum + w
        value = (old.value * old.weight_sum + new * w) / total
        return _Slot(value, total, old.proposals + 1)
