"""How long Python's garbage collector stops this process, by generation, for /metrics.

A collection stops the thread that set it off and, through the GIL, every other Python
thread: in a process that ticks sessions, every session's tick waits for it. A full
collection walks every tracked object that is not frozen, so it grows with the sessions
(76 ms on average with 32 sessions in the orchestrator alone, in the soak here; 190-260 ms
with 64 in the bench's process). Counted here
in plain numbers by a ``gc.callbacks`` hook and turned into families at scrape, as the tick
series are: ``orchestrator_gc_pause_seconds`` (a histogram per generation) and
``orchestrator_gc_pause_longest_seconds``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.observability.tick_series import LocalHistogram

GC_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
GENERATIONS = (0, 1, 2)
PAUSES = "orchestrator_gc_pause_seconds"
LONGEST = "orchestrator_gc_pause_longest_seconds"
FAMILIES = frozenset((PAUSES, LONGEST))


class GcPauses(Collector):
    """Every collection's duration since ``install`` (once per process; idempotent)."""

    def __init__(self) -> None:
        self.pauses = [LocalHistogram(GC_BUCKETS) for _ in GENERATIONS]
        self.longest = [0.0 for _ in GENERATIONS]
        self._started: float | None = None

    @property
    def installed(self) -> bool:
        return self._on_collection in gc.callbacks

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self._on_collection)

    def uninstall(self) -> None:
        while self._on_collection in gc.callbacks:
            gc.callbacks.remove(self._on_collection)

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        # Collections never nest (CPython runs one at a time, holding the GIL), so one
        # start time is enough.
        if phase == "start":
            self._started = time.perf_counter()
            return
        started, self._started = self._started, None
        generation = info.get("generation")
        if started is None or generation not in GENERATIONS:
            return
        seconds = time.perf_counter() - started
        self.pauses[generation].observe(seconds)
        if seconds > self.longest[generation]:
            self.longest[generation] = seconds

    def describe(self) -> Iterator[Metric]:
        return iter(self._families(with_samples=False))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(with_samples=True))

    def _families(self, with_samples: bool) -> list[Metric]:
        pauses = HistogramMetricFamily(
            PAUSES,
            "Garbage collections: how long each stopped the process, by generation",
            labels=["generation"])
        longest = GaugeMetricFamily(
            LONGEST,
            "The longest garbage collection since start, by generation", labels=["generation"])
        if with_samples:
            for g in GENERATIONS:
                pauses.add_metric([str(g)], self.pauses[g].cumulative(), self.pauses[g].sum)
                longest.add_metric([str(g)], self.longest[g])
        return [pauses, longest]
