"""Prometheus metrics. One registry per process; sessions label their series by id and
remove them when deleted so the registry does not grow with churn."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from orchestrator.observability.gc_pauses import FAMILIES as GC_FAMILIES
from orchestrator.observability.gc_pauses import GcPauses
from orchestrator.observability.tick_series import TickSeries, TickSeriesCollector

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)

# Tick period and jitter, observation age, plan length, commands, underruns and holds are
# counted by the ticks in plain numbers (see tick_series) and read here at scrape.
TICK_SERIES = TickSeriesCollector()
REGISTRY.register(TICK_SERIES)
# The collector's pauses in this process: installed by the process that ticks sessions.
GC_PAUSES = GcPauses()
REGISTRY.register(GC_PAUSES)
INFERENCE_LATENCY = Histogram(
    "orchestrator_inference_latency_seconds", "Triton request latency seen by a session",
    ["session"], buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)
SAFETY_INTERVENTIONS = Counter(
    "orchestrator_safety_interventions_total", "Commands changed or held by the safety layer",
    ["session", "kind"], registry=REGISTRY,
)
ERRORS = Counter(
    "orchestrator_errors_total", "Errors by kind", ["session", "kind"], registry=REGISTRY
)
SESSIONS = Gauge("orchestrator_sessions", "Sessions by state", ["state"], registry=REGISTRY)
TRITON_UP = Gauge("orchestrator_triton_up", "1 when Triton answers ready", registry=REGISTRY)

_PER_SESSION = (INFERENCE_LATENCY,)
_PER_SESSION_KIND = (SAFETY_INTERVENTIONS, ERRORS)


def tick_series(session_id: str) -> TickSeries:
    return TICK_SERIES.series(session_id)


def forget_session(session_id: str) -> None:
    TICK_SERIES.forget(session_id)
    for metric in _PER_SESSION:
        with contextlib.suppress(KeyError):
            metric.remove(session_id)
    for labelled in _PER_SESSION_KIND:
        # prometheus_client has no "remove by partial label"; walk the known children.
        for labels in list(labelled._metrics):
            if labels and labels[0] == session_id:
                labelled.remove(*labels)


# A family as it crosses a process boundary: name, help, type, (sample, labels, value)s.
Family = tuple[str, str, str, list[tuple[str, dict[str, str], float]]]


# A worker's process-wide families that the API shows labelled by worker: its own.
_PER_PROCESS = GC_FAMILIES


def session_families() -> list[Family]:
    """This process's per-session series and garbage-collector pauses, for the API to
    expose when sessions live in workers (their other process-wide gauges, such as
    Triton's, are the API's to say)."""
    out: list[Family] = []
    for family in REGISTRY.collect():
        own = family.name in _PER_PROCESS
        samples = [(s.name, dict(s.labels), float(s.value)) for s in family.samples
                   if own or "session" in s.labels]
        if samples:
            out.append((family.name, family.documentation, family.type, samples))
    return out


class _WithWorkers(Collector):
    """This process's families with each worker's per-session samples added, labelled by
    worker (a family appears once however many processes feed it)."""

    def __init__(self, workers: Mapping[str, Sequence[Family]]) -> None:
        self.workers = workers

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for family in REGISTRY.collect():
            merged[family.name] = family
        for worker, families in self.workers.items():
            for name, documentation, kind, samples in families:
                into = merged.get(name)
                if into is None:
                    into = merged[name] = Metric(name, documentation, kind)
                into.samples.extend(Sample(n, {**labels, "worker": worker}, value)
                                      for n, labels, value in samples)
        yield from merged.values()


def exposition(workers: Mapping[str, Sequence[Family]]) -> bytes:
    if not workers:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_WithWorkers(workers))
    return generate_latest(registry)


metrics_router = APIRouter()


@metrics_router.get("/metrics", tags=["Metrics"], response_class=Response)
async def metrics(request: Request) -> Response:
    manager = request.app.state.manager
    TRITON_UP.set(1.0 if await manager.triton.is_server_ready() else 0.0)
    counts: dict[str, int] = dict.fromkeys(
        ("initializing", "ready", "running", "stopped", "error"), 0
    )
    for session in manager.sessions():
        counts[session.state.value] = counts.get(session.state.value, 0) + 1
    for state, count in counts.items():
        SESSIONS.labels(state).set(count)
    return Response(exposition(await manager.worker_metrics()), media_type=CONTENT_TYPE_LATEST)
