"""Rate-limited reporting: log an event kind once per interval, count the rest.

Pure (``now`` is an argument) so the session can log safety interventions and dropped
input "once, rate-limited" without a flood at 30 Hz per session.
"""

from __future__ import annotations

import math
from collections.abc import Hashable


class LogThrottle:
    """``should_log(key, now)`` is True at most once per ``interval_s`` per key; the
    suppressed occurrences are counted and handed back with the next allowed one."""

    def __init__(self, interval_s: float = 5.0, max_keys: int = 1024) -> None:
        if not math.isfinite(interval_s) or interval_s < 0:
            raise ValueError(f"interval_s must be finite and >= 0, got {interval_s}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {max_keys}")
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def should_log(self, key: Hashable, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        if last is None and len(self._last) >= self.max_keys:
            # Bounded memory under junk keys: forget the oldest key.
            oldest = next(iter(self._last))
            del self._last[oldest]
            self._suppressed.pop(oldest, None)
        self._last.pop(key, None)
        self._last[key] = now  # re-insert: dict order is the age order
        return True

    def take_suppressed(self, key: Hashable) -> int:
        """How many times ``key`` was suppressed since it was last logged (and reset)."""
        return self._suppressed.pop(key, 0)
