"""The ticks' own counting (tick_series) exposes what prometheus_client's metrics did."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.observability import metrics
from orchestrator.observability.tick_series import JITTER_BUCKETS, LocalHistogram


def _samples(text: str, family: str) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value
            for f in text_string_to_metric_families(text) if f.name == family
            for s in f.samples if not s.name.endswith("_created")}


@settings(deadline=None, max_examples=100)
@given(st.lists(st.floats(0, 0.3, allow_nan=False) | st.sampled_from(JITTER_BUCKETS),
                max_size=60))
def test_local_histogram_buckets_like_prometheus_client(values: list[float]) -> None:
    registry = CollectorRegistry()
    reference = Histogram("h_seconds", "h", buckets=JITTER_BUCKETS, registry=registry)
    local = LocalHistogram(JITTER_BUCKETS)
    for v in values:  # bucket bounds themselves included: le means <=
        reference.observe(v)
        local.observe(v)
    expected = _samples(generate_latest(registry).decode(), "h_seconds")
    got = {("h_seconds_bucket", le): count for le, count in local.cumulative()}
    got[("h_seconds_count", "")] = float(len(values))
    assert {k: v for k, v in expected.items() if k[0] != "h_seconds_sum"} == got
    assert abs(expected[("h_seconds_sum", "")] - local.sum) <= 1e-9 * max(1.0, local.sum)


def test_a_sessions_tick_series_are_exposed_from_the_start_and_forgotten_on_delete() -> None:
    series = metrics.tick_series("series-a")
    assert metrics.tick_series("series-a") is series  # a re-created loop keeps counting
    text = generate_latest(metrics.REGISTRY).decode()
    for family in ("orchestrator_commands_sent_total", "orchestrator_plan_underruns_total",
                   "orchestrator_tick_jitter_seconds_count", "orchestrator_plan_length_ticks",
                   "orchestrator_observation_age_seconds"):
        assert f'{family}{{session="series-a"}} 0.0' in text, family
    series.commands += 2
    series.hold("waiting_for_chunk")
    series.period.observe(0.0334)
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'orchestrator_commands_sent_total{session="series-a"} 2.0' in text
    assert 'orchestrator_holds_total{reason="waiting_for_chunk",session="series-a"} 1.0' in text
    assert 'orchestrator_tick_period_seconds_bucket{le="0.035",session="series-a"} 1.0' in text
    assert 'orchestrator_tick_period_seconds_bucket{le="0.0333",session="series-a"} 0.0' in text
    metrics.forget_session("series-a")
    assert "series-a" not in generate_latest(metrics.REGISTRY).decode()
