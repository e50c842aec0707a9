"""Fidelity figures of one session's published stream against the oracle's ideal. Pure.

The ideal stream advances by ``u = v / fps`` per tick and joint. From the ticks the
session decided (published command or none) and the chunks it merged:

* tracking: per-tick executed velocity ``(c[k] - c[k-1]) / u`` against 1 (signed mean
  error, p99 of the absolute error, both in %), the slope of a fit over the window, and the
  lag of each merged chunk: how many ticks behind the stream it continues it starts
  (``(c[k-1] + u - a[k]) / u`` at its first published tick; > 0 replays the past);
* seams: the largest step at merge ticks (the first tick each chunk drove) over the
  largest elsewhere, and backtracks: steps against the joint's direction, at merge ticks
  and anywhere;
* starvation: decided ticks that published nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MergeRecord:
    k_now: int  # last tick decided when the chunk merged
    align_tick: int  # the tick a[0] belongs to
    request_tick: int  # the snapshot tick
    chunk: np.ndarray  # [H, D] as the model returned it
    obs_age_s: float = 0.0
    fade_ticks: int = 0  # crossfade length used (0: no overlap)
    fade_first: int = 0  # chunk index where the fade starts (0: anchored on a[0])
    gap: float = 0.0  # largest |new - old| over the overlapping ticks


def _pct(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    arr = np.asarray(values, dtype=np.float64)
    return None if arr.size == 0 else round(float(np.percentile(arr, q)), 4)


def fidelity(decided: Sequence[int], published: Mapping[int, np.ndarray],
             merges: Sequence[MergeRecord], velocity: Sequence[float], fps: float,
             max_step: float | None = None) -> dict[str, Any]:
    ticks = sorted(set(decided))
    u = np.asarray(velocity, dtype=np.float64) / fps
    moving = np.abs(u) > 0
    in_window = set(ticks)
    merge_ticks = {m.k_now + 1 for m in merges if m.k_now + 1 in in_window}
    rel: list[np.ndarray] = []  # per-tick step / u, for consecutive published ticks
    steps: list[np.ndarray] = []
    at_merge: list[bool] = []
    for k in ticks:
        if k in published and k - 1 in published:
            step = published[k] - published[k - 1]
            steps.append(step)
            rel.append(step[moving] / u[moving])
            at_merge.append(k in merge_ticks)
    rel_arr = np.asarray(rel).reshape(-1, int(moving.sum()))
    step_arr = np.abs(np.asarray(steps).reshape(-1, len(u)))
    merge_mask = np.asarray(at_merge, dtype=bool)
    err = rel_arr - 1.0
    backtrack = (rel_arr < 0).any(axis=1) if rel_arr.size else np.zeros(0, dtype=bool)
    lags: list[float] = []
    for m in merges:
        k = m.k_now + 1
        i = k - m.align_tick
        if k in published and k - 1 in published and 0 <= i < len(m.chunk):
            expected = published[k - 1] + u
            lags.extend(((expected - m.chunk[i])[moving] / u[moving]).tolist())
    slope = None
    pub_ticks = [k for k in ticks if k in published]
    if len(pub_ticks) >= 3:
        values = np.stack([published[k] for k in pub_ticks])
        fit = np.polyfit(np.asarray(pub_ticks, dtype=np.float64), values[:, moving], 1)[0]
        slope = round(float(np.mean(fit / u[moving])), 5)
    largest_merge = float(step_arr[merge_mask].max()) if merge_mask.any() else None
    largest_else = float(step_arr[~merge_mask].max()) if (~merge_mask).any() else None
    out: dict[str, Any] = {
        "ticks": len(ticks),
        "published": len(pub_ticks),
        "starved_ticks": len(ticks) - len(pub_ticks),
        "merges": len(merge_ticks),
        "velocity_error_pct": {
            "mean": None if not err.size else round(float(err.mean()) * 100, 3),
            "p99_abs": None if not err.size else round(float(np.percentile(np.abs(err), 99)) * 100,
                                                        3),
        },
        "slope_vs_ideal": slope,
        "lag_ticks": {"mean": None if not lags else round(float(np.mean(lags)), 3),
                      "p99": _pct(lags, 99), "max": None if not lags else round(max(lags), 3)},
        "seams": {
            "largest_step_at_merge": None if largest_merge is None else round(largest_merge, 4),
            "largest_step_elsewhere": None if largest_else is None else round(largest_else, 4),
            "ratio": None if not (largest_merge is not None and largest_else)
            else round(largest_merge / largest_else, 3),
            "backtracks_at_merge": int((backtrack & merge_mask).sum()),
            "backtracks": int(backtrack.sum()),
        },
        "largest_step": None if not step_arr.size else round(float(step_arr.max()), 4),
    }
    if max_step is not None:
        out["steps_over_max_step"] = int((step_arr > max_step + 1e-6).sum())
    return out


def crossfade_weight(m: MergeRecord, tick: int) -> float:
    """The new chunk's weight at ``tick`` (0 for ticks decided before the merge)."""
    if tick <= m.k_now or m.fade_ticks <= 0:
        return 0.0
    return min(1.0, (tick - m.align_tick - m.fade_first + 1) / m.fade_ticks)


def crossfade_bound_violations(published: Mapping[int, np.ndarray], merges: Sequence[MergeRecord],
                               velocity: Sequence[float], fps: float) -> int:
    """Ticks inside a crossfade whose step exceeds what the blend promises (CONTROL.md, and
    tests/control/test_plan.py): the motion's own step ``u`` plus the rise of the new
    chunk's weight times the chunks' largest disagreement, ``u + (w[k] - w[k-1]) * gap``."""
    u = np.abs(np.asarray(velocity, dtype=np.float64)) / fps
    bad = 0
    for m in merges:
        if m.fade_ticks <= 0:
            continue
        for k in range(m.k_now + 1, m.k_now + 1 + m.fade_ticks + 1):
            if k in published and k - 1 in published:
                rise = crossfade_weight(m, k) - crossfade_weight(m, k - 1)
                step = np.abs(published[k] - published[k - 1])
                # The model computes in float32: allow its rounding at these magnitudes.
                tol = 1e-6 + 4e-7 * float(np.max(np.abs(published[k])))
                if np.any(step > u + rise * m.gap + tol):
                    bad += 1
    return bad
