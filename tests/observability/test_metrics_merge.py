"""The API's /metrics with sessions in workers: each worker's per-session series are added to
the API's own, labelled by worker, and every family is exposed once (Prometheus refuses a
second HELP/TYPE for a name)."""

from __future__ import annotations

import gc

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.observability import metrics
from orchestrator.observability.metrics import exposition, forget_session, session_families


def test_worker_series_are_merged_into_one_family_each_labelled_by_worker() -> None:
    series = metrics.tick_series("merge-a")
    series.commands += 3
    series.jitter.observe(0.001)
    try:
        metrics.GC_PAUSES.install()  # as a worker's manager does
        gc.collect()
        families = session_families()
        # What crosses the process boundary: per-session samples, and the worker's own
        # garbage-collector pauses (nothing else process-wide: Triton's gauge is the API's).
        gc_families = {"orchestrator_gc_pause_seconds", "orchestrator_gc_pause_longest_seconds"}
        assert all("session" in labels or name in gc_families
                   for name, _, _, samples in families for _, labels, _ in samples)
        assert {name for name, *_ in families} >= {"orchestrator_commands_sent", *gc_families}
    finally:
        forget_session("merge-a")
    # A worker's families, and this process's own (without that session now).
    text = exposition({"w0": families, "w1": []}).decode()
    assert text.count("# TYPE orchestrator_commands_sent_total counter") == 1
    assert text.count("# TYPE orchestrator_tick_jitter_seconds histogram") == 1
    samples = {(s.name, s.labels.get("session"), s.labels.get("worker")): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("orchestrator_commands_sent_total", "merge-a", "w0")] == 3.0
    assert samples[("orchestrator_tick_jitter_seconds_count", "merge-a", "w0")] == 1.0
    assert ("orchestrator_triton_up", None, None) in samples  # the API's own gauge stays
    assert text.count("# TYPE orchestrator_gc_pause_seconds histogram") == 1
    full = {s.labels.get("worker"): s.value for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "orchestrator_gc_pause_seconds_count"
            and s.labels["generation"] == "2"}
    assert full["w0"] >= 1 and None in full  # the worker's, and the API process's own


def test_without_workers_the_registry_is_exposed_as_it_is() -> None:
    gc.disable()  # a collection between the two would change the collector's pause series
    try:
        assert exposition({}) == metrics.generate_latest(metrics.REGISTRY)
    finally:
        gc.enable()
