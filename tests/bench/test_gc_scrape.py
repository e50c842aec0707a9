"""The soak's reading of the collector's pauses from /metrics (``bench.gc_scrape``), on the
orchestrator's real exposition with a worker's families merged in."""

from __future__ import annotations

import gc

from bench.gc_scrape import gc_pauses, window
from orchestrator.observability import metrics


def _exposition() -> str:
    # This process stands for the API and, through its own families, for worker "w0".
    return metrics.exposition({"w0": metrics.session_families()}).decode()


def test_a_window_holds_the_collections_made_in_it_per_process_and_generation() -> None:
    metrics.GC_PAUSES.install()
    gc.collect()  # a collection before the window is not the window's
    before = gc_pauses(_exposition())
    held = [[i] for i in range(200_000)]  # a full collection with something to walk
    gc.collect()
    gc.collect()
    del held
    after = gc_pauses(_exposition())
    rows = window(before, after)
    assert set(rows) >= {"api gen0", "api gen1", "api gen2", "w0 gen2"}
    for name in ("api gen2", "w0 gen2"):
        row = rows[name]
        # The two asked for, and any the allocations above set off.
        n = row["collections"]
        assert n >= 2
        assert row["total_ms"] > 0
        assert 0 <= row["over_100ms"] <= row["over_50ms"] <= row["over_10ms"] <= n
        assert row["longest_since_start_ms"] * n >= row["total_ms"] - 0.1 * n  # (rounding)


def test_an_orchestrator_without_the_families_reads_as_none() -> None:
    assert gc_pauses("# nothing here\n") == {}
    assert window({}, {}) == {}
