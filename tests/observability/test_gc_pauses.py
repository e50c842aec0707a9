"""The collector's pauses as /metrics says them: real collections, timed by the hook."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.observability.gc_pauses import GcPauses


@pytest.fixture
def pauses() -> Iterator[GcPauses]:
    watcher = GcPauses()
    watcher.install()
    watcher.install()  # idempotent: one hook, every collection counted once
    try:
        yield watcher
    finally:
        watcher.uninstall()
    assert not watcher.installed


def _samples(watcher: GcPauses) -> dict[tuple[str, str, str | None], float]:
    registry = CollectorRegistry()
    registry.register(watcher)
    text = generate_latest(registry).decode()
    return {(s.name, s.labels["generation"], s.labels.get("le")): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_a_full_collection_is_counted_with_no_more_than_it_took(pauses: GcPauses) -> None:
    # Enough tracked objects that the collection takes a while to walk them.
    held = [[i] for i in range(300_000)]
    before = _samples(pauses)
    start = time.perf_counter()
    gc.collect()
    outside = time.perf_counter() - start
    after = _samples(pauses)
    del held
    assert gc.callbacks.count(pauses._on_collection) == 1
    count = "orchestrator_gc_pause_seconds_count"
    assert after[(count, "2", None)] - before[(count, "2", None)] == 1
    took = after[("orchestrator_gc_pause_seconds_sum", "2", None)] - before[
        ("orchestrator_gc_pause_seconds_sum", "2", None)]
    assert 0 < took <= outside
    assert after[("orchestrator_gc_pause_longest_seconds", "2", None)] >= took
    # Cumulative buckets: the +Inf one holds every collection of the generation.
    assert after[("orchestrator_gc_pause_seconds_bucket", "2", "+Inf")] == after[(count, "2", None)]


def test_each_generation_is_counted_apart(pauses: GcPauses) -> None:
    gc.collect(0)
    gc.collect(1)
    counts = [sum(h.counts) for h in pauses.pauses]
    assert counts[0] >= 1 and counts[1] >= 1


def test_nothing_is_counted_once_uninstalled() -> None:
    watcher = GcPauses()
    watcher.install()
    watcher.uninstall()
    gc.collect()
    assert [sum(h.counts) for h in watcher.pauses] == [0, 0, 0]
