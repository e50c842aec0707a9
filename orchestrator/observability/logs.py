"""Recent log records kept in memory for /debug/logs."""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any


class LogRing(logging.Handler):
    """A logging handler that keeps the last ``capacity`` records as plain dicts."""

    def __init__(self, capacity: int = 2000) -> None:
        super().__init__(level=logging.DEBUG)
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                + f".{int(record.msecs):03d}Z",
                "level": record.levelname,
                "levelno": record.levelno,
                "logger": record.name,
                "message": record.getMessage(),
            }
        except Exception:  # a bad format string must not break logging
            self.handleError(record)
            return
        with self._guard:
            self._records.append(entry)

    def recent(self, limit: int = 100, min_level: int = logging.DEBUG) -> list[dict[str, Any]]:
        with self._guard:
            matching = [r for r in self._records if r["levelno"] >= min_level]
        return matching[-limit:] if limit > 0 else []


_ring: LogRing | None = None


def install_log_ring(capacity: int) -> LogRing:
    """Attach one ring to the root logger (idempotent: the app may be created many times)."""
    global _ring
    if _ring is None:
        _ring = LogRing(capacity)
        logging.getLogger().addHandler(_ring)
        if logging.getLogger().level > logging.INFO or logging.getLogger().level == 0:
            logging.getLogger().setLevel(logging.INFO)
        # One line per HTTP request (room polling, Arena REST) would drown the ring.
        logging.getLogger("httpx").setLevel(logging.WARNING)
    return _ring


class RateLimitedLogger:
    """Logs a given key at most once per ``interval_s``; counts what it suppressed."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval = interval_s
        self._last: dict[str, float] = {}
        self.suppressed: collections.Counter[str] = collections.Counter()

    def log(self, level: int, key: str, msg: str, *args: object, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self.suppressed[key] += 1
            return
        self._last[key] = now
        skipped = self.suppressed.pop(key, 0)
        suffix = f" ({skipped} similar suppressed)" if skipped else ""
        self._logger.log(level, msg + suffix, *args)
