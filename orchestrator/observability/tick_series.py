"""A session's per-tick series as plain numbers, turned into Prometheus families at scrape.

Every tick of every session used to update six prometheus_client children (two histograms,
three counters, two gauges): each update takes a lock and walks a few Python layers, about
as much CPU as the control decision itself. Here a tick adds to ints and floats of its own
session, and the registry's collector reads them when /metrics is scraped (in the same
thread as the ticks, so no lock is needed). The families keep the names, labels and types
the prometheus_client metrics had.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

TICK_BUCKETS = (0.005, 0.01, 0.02, 0.025, 0.03, 0.0333, 0.035, 0.04, 0.05, 0.075, 0.1, 0.25)
JITTER_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


class LocalHistogram:
    """Bucket counts with Prometheus' ``le`` semantics (a value counts in every bucket whose
    bound is >= it), kept per bucket and made cumulative at scrape."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((floatToGoString(bound), float(total)))
        return out


class TickSeries:
    """What one session's ticks count, for /metrics."""

    __slots__ = (
        "age",
        "commands",
        "holds",
        "jitter",
        "period",
        "plan",
        "session_id",
        "underruns",
    )

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.commands = 0
        self.underruns = 0
        self.holds: dict[str, int] = {}  # by reason
        self.plan = 0.0  # ticks of actions left
        self.age = 0.0  # of the oldest part of the latest observation
        self.jitter = LocalHistogram(JITTER_BUCKETS)
        self.period = LocalHistogram(TICK_BUCKETS)

    def hold(self, reason: str) -> None:
        self.holds[reason] = self.holds.get(reason, 0) + 1


class TickSeriesCollector(Collector):
    """Every live session's ``TickSeries`` as the registry's families."""

    def __init__(self) -> None:
        self._series: dict[str, TickSeries] = {}

    def series(self, session_id: str) -> TickSeries:
        """The session's series, created on first use; the same object afterwards (a loop
        re-created for the same session keeps counting: counters never go back)."""
        found = self._series.get(session_id)
        if found is None:
            found = self._series[session_id] = TickSeries(session_id)
        return found

    def forget(self, session_id: str) -> None:
        self._series.pop(session_id, None)

    def describe(self) -> Iterator[Metric]:
        return iter(self._families([]))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families(list(self._series.values())))

    @staticmethod
    def _families(series: list[TickSeries]) -> list[Metric]:
        period = HistogramMetricFamily("orchestrator_tick_period_seconds",
                                       "Time between consecutive published ticks",
                                       labels=["session"])
        jitter = HistogramMetricFamily("orchestrator_tick_jitter_seconds",
                                       "Absolute lateness of a tick against its deadline",
                                       labels=["session"])
        age = GaugeMetricFamily("orchestrator_observation_age_seconds",
                                "Age of the oldest part of the latest observation",
                                labels=["session"])
        plan = GaugeMetricFamily("orchestrator_plan_length_ticks",
                                 "Ticks of actions left in the plan", labels=["session"])
        commands = CounterMetricFamily("orchestrator_commands_sent", "Joint commands published",
                                       labels=["session"])
        underruns = CounterMetricFamily("orchestrator_plan_underruns",
                                        "Ticks with no planned action", labels=["session"])
        holds = CounterMetricFamily("orchestrator_holds",
                                    "Ticks that published nothing (the robot holds), by reason",
                                    labels=["session", "reason"])
        for s in series:
            label = [s.session_id]
            period.add_metric(label, s.period.cumulative(), s.period.sum)
            jitter.add_metric(label, s.jitter.cumulative(), s.jitter.sum)
            age.add_metric(label, s.age)
            plan.add_metric(label, s.plan)
            commands.add_metric(label, s.commands)
            underruns.add_metric(label, s.underruns)
            for reason, count in s.holds.items():
                holds.add_metric([s.session_id, reason], count)
        return [period, jitter, age, plan, commands, underruns, holds]
