"""The API's /metrics with sessions in workers: each worker's per-session series are added to
the API's own, labelled by worker, and every family is exposed once (Prometheus refuses a
second HELP/TYPE for a name)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.observability import metrics
from orchestrator.observability.metrics import exposition, forget_session, session_families


def test_worker_series_are_merged_into_one_family_each_labelled_by_worker() -> None:
    series = metrics.tick_series("merge-a")
    series.commands += 3
    series.jitter.observe(0.001)
    try:
        families = session_families()
        # What crosses the process boundary holds per-session samples only.
        assert all("session" in labels for _, _, _, samples in families
                   for _, labels, _ in samples)
        assert any(name == "orchestrator_commands_sent" for name, *_ in families)
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


def test_without_workers_the_registry_is_exposed_as_it_is() -> None:
    assert exposition({}) == metrics.generate_latest(metrics.REGISTRY)
