"""The garbage collector's pauses of a running orchestrator, read from its /metrics
(``orchestrator_gc_pause_seconds``: the API process's own and, labelled by worker, each
session worker's), and what a window added to them."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from orchestrator.observability.gc_pauses import FAMILIES, LONGEST

Key = tuple[str, str]  # process ("api" or the worker's name), generation


def gc_pauses(exposition: str) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name not in FAMILIES:
            continue
        for s in family.samples:
            key = (s.labels.get("worker", "api"), s.labels["generation"])
            row = out.setdefault(key, {"count": 0.0, "sum_s": 0.0, "buckets": {},
                                       "longest_since_start_s": 0.0})
            if s.name.endswith("_bucket"):
                row["buckets"][s.labels["le"]] = s.value
            elif s.name.endswith("_count"):
                row["count"] = s.value
            elif s.name.endswith("_sum"):
                row["sum_s"] = s.value
            elif s.name == LONGEST:
                row["longest_since_start_s"] = s.value
    return out


def window(before: dict[Key, dict[str, Any]], after: dict[Key, dict[str, Any]],
           over_s: tuple[float, ...] = (0.01, 0.05, 0.1)) -> dict[str, dict[str, Any]]:
    """Per process and generation: collections in the window, their total, how many took
    longer than each of ``over_s`` (from the histogram's buckets), the longest so far."""
    out: dict[str, dict[str, Any]] = {}
    for key, a in sorted(after.items()):
        b = before.get(key, {"count": 0.0, "sum_s": 0.0, "buckets": {}})
        n = a["count"] - b["count"]
        row: dict[str, Any] = {"collections": int(n),
                               "total_ms": round((a["sum_s"] - b["sum_s"]) * 1000, 1)}
        for limit in over_s:
            le = _bound(a["buckets"], limit)
            if le is not None:
                within = a["buckets"][le] - b["buckets"].get(le, 0.0)
                row[f"over_{limit * 1000:g}ms"] = int(n - within)
        row["longest_since_start_ms"] = round(a["longest_since_start_s"] * 1000, 1)
        out[f"{key[0]} gen{key[1]}"] = row
    return out


def _bound(buckets: dict[str, float], limit: float) -> str | None:
    """The bucket bound equal to ``limit``, as the exposition spells it."""
    for le in buckets:
        if le != "+Inf" and abs(float(le) - limit) < 1e-12:
            return le
    return None
