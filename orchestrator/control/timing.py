"""Tick timing, inference latency and the decision to ask for the next chunk.

Nothing here reads a clock: every time is an argument (seconds on a monotonic clock).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# ceil(0.1 * 30) is 4 in floating point; a tolerance keeps "exactly 3 ticks" at 3.
_EPS = 1e-9


def _check_rate(rate: float) -> None:
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a finite number > 0, got {rate}")


def latency_ticks(latency_s: float, rate: float) -> int:
    """Whole ticks that pass while waiting ``latency_s`` at ``rate`` Hz (rounded up)."""
    _check_rate(rate)
    return max(0, math.ceil(latency_s * rate - _EPS))


class TickClock:
    """Tick ``k`` is due at ``t0 + k / rate``: deadlines come from ``k``, never from the
    previous publish time, so a late tick does not shift the ones after it."""

    def __init__(self, t0: float, rate: float) -> None:
        _check_rate(rate)
        if not math.isfinite(t0):
            raise ValueError(f"t0 must be finite, got {t0}")
        self.t0 = t0
        self.rate = rate
        self.period = 1.0 / rate

    def deadline(self, k: int) -> float:
        """When tick ``k`` is due."""
        return self.t0 + k / self.rate

    def next_deadline(self, k: int) -> float:
        """When the tick after ``k`` is due: what the loop sleeps until after publishing k."""
        return self.deadline(k + 1)

    def due_tick(self, now: float) -> int:
        """The latest tick whose deadline is at or before ``now`` (-1 before t0)."""
        return max(-1, math.floor((now - self.t0) * self.rate + _EPS))

    def next_tick(self, last_tick: int, now: float) -> int:
        """The tick to run next after ``last_tick``: the one after it, or, when the loop
        woke up more than a period late, the latest due one (missed ticks are skipped,
        never published in a burst)."""
        return max(last_tick + 1, self.due_tick(now))

    def lateness(self, k: int, now: float) -> float:
        """Seconds tick ``k`` runs after its deadline (negative: early)."""
        return now - self.deadline(k)


@dataclass(frozen=True)
class JitterStats:
    """|period - 1/rate| percentiles over a window of publish periods, in seconds."""

    p50: float
    p99: float
    samples: int


def period_jitter(periods: Iterable[float], rate: float) -> JitterStats:
    """Jitter of measured periods between consecutive publishes (zeros when empty)."""
    _check_rate(rate)
    arr = np.asarray(list(periods), dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return JitterStats(0.0, 0.0, 0)
    dev = np.abs(arr - 1.0 / rate)
    p50, p99 = np.percentile(dev, [50, 99])
    return JitterStats(float(p50), float(p99), int(arr.size))


@dataclass(frozen=True)
class LatencyStats:
    p50: float
    p95: float
    p99: float
    samples: int
    measured: bool  # False: the values are the configured prior


class LatencyTracker:
    """Recent inference latencies of one session. Until ``min_samples`` latencies are
    known every percentile is the configured prior, or the slowest latency seen if that is
    larger, so one lucky first request cannot make the refill decision too optimistic and
    a slow model does not underrun while the window fills."""

    def __init__(self, prior_s: float = 0.1, window: int = 100, min_samples: int = 5) -> None:
        if not math.isfinite(prior_s) or prior_s < 0:
            raise ValueError(f"prior_s must be finite and >= 0, got {prior_s}")
        if window < 1 or not 1 <= min_samples <= window:
            raise ValueError(f"need window >= 1 and 1 <= min_samples <= window, got "
                             f"window={window}, min_samples={min_samples}")
        self.prior_s = prior_s
        self.min_samples = min_samples
        self._samples: deque[float] = deque(maxlen=window)
        self._cache: LatencyStats | None = None

    def add(self, latency_s: float) -> None:
        """Record one request's latency; a negative or non-finite value is a ValueError."""
        if not math.isfinite(latency_s) or latency_s < 0:
            raise ValueError(f"latency must be finite and >= 0, got {latency_s}")
        self._samples.append(float(latency_s))
        self._cache = None

    def clear(self) -> None:
        self._samples.clear()
        self._cache = None

    def stats(self) -> LatencyStats:
        # Asked every tick by the refill decision, changed once per chunk: cache it.
        if self._cache is None:
            self._cache = self._compute()
        return self._cache

    def _compute(self) -> LatencyStats:
        n = len(self._samples)
        if n < self.min_samples:
            # The prior is a floor, not a cap: a slow model (the default ACT on a CPU takes
            # far longer than the prior) is believed from its first answer on.
            p = max(self.prior_s, max(self._samples, default=0.0))
            return LatencyStats(p, p, p, n, measured=False)
        p50, p95, p99 = np.percentile(np.fromiter(self._samples, np.float64, n), [50, 95, 99])
        return LatencyStats(float(p50), float(p95), float(p99), n, measured=True)

    @property
    def p95(self) -> float:
        return self.stats().p95


class RefillPolicy:
    """When to ask for the next chunk: at most one request in flight; ask when the plan
    would run out before an answer can arrive (``ceil(p95 * rate) + margin_ticks``), or
    every ``replan_every`` ticks; never from a stale observation."""

    def __init__(self, margin_ticks: int = 3, replan_every: int | None = None) -> None:
        if margin_ticks < 0:
            raise ValueError(f"margin_ticks must be >= 0, got {margin_ticks}")
        if replan_every is not None and replan_every < 1:
            raise ValueError(f"replan_every must be None or >= 1, got {replan_every}")
        self.margin_ticks = margin_ticks
        self.replan_every = replan_every

    def threshold(self, latency_p95: float, rate: float) -> int:
        """Ask when the horizon is at or below this many ticks."""
        return latency_ticks(latency_p95, rate) + self.margin_ticks

    def should_request(
        self,
        k_now: int,
        horizon: int,
        in_flight: bool,
        latency_p95: float,
        rate: float,
        last_request_tick: int | None,
        observation_fresh: bool,
    ) -> bool:
        if in_flight or not observation_fresh:
            return False
        if horizon <= self.threshold(latency_p95, rate):
            return True
        if self.replan_every is None:
            return False
        return last_request_tick is None or k_now - last_request_tick >= self.replan_every
