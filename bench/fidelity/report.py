"""Console lines and plots of the fidelity report (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def summary_lines(window: dict[str, Any]) -> list[str]:
    head = f"[{window['oracle']} +{window['added_latency_s'] * 1000:.0f} ms]"
    if "error" in window:
        return [f"{head} failed: {window['error']}"]
    lines = [head]
    for label, row in window["configs"].items():
        seams = row["seams"]
        align = row.get("alignment_offset") or {}
        lines.append(
            f"  {label:28s} vel err {_fmt(row['velocity_error_pct']['mean'], '%'):>8s} "
            f"p99 {_fmt(row['velocity_error_pct']['p99_abs'], '%'):>8s} "
            f"lag {_fmt(row['lag_ticks']['mean']):>6s} "
            f"seam x{_fmt(seams['ratio']):>6s} back {seams['backtracks_at_merge']:>3d}/"
            f"{seams['backtracks']:<3d} starved {row['starved_ticks']:>3d} "
            f"offset {_fmt(align.get('ticks_p50'))} t / {_fmt(align.get('ms_p50'))} ms "
            f"({align.get('source', '-')})")
    return lines


def plot_all(report: dict[str, Any], out: Path) -> list[Path]:
    windows = [w for w in report["windows"] if "error" not in w]
    paths: list[Path] = []
    for source in sorted({w["source"] for w in windows if w["oracle"] != "oracle_disagree"}):
        ws = sorted((w for w in windows if w["source"] == source
                     and w["oracle"] != "oracle_disagree"), key=lambda w: w["added_latency_s"])
        if ws:
            paths.append(_plot_tracking(ws, source, out))
            paths.append(_plot_merges(ws[len(ws) // 2], report, out))
    disagree = [w for w in windows if w["oracle"] == "oracle_disagree"]
    if disagree:
        paths.append(_plot_disagreement(disagree, out))
        paths.append(_plot_merges(disagree[0], report, out))
    return paths


def _plot_tracking(windows: list[dict[str, Any]], source: str, out: Path) -> Path:
    latencies = [w["added_latency_s"] * 1000 for w in windows]
    labels = list(windows[0]["configs"])
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for label in labels:
        rows = [w["configs"].get(label) for w in windows]
        style = "-" if "(snapshot)" not in label and "lerobot" not in label else (
            "--" if "lerobot" not in label else ":")
        axes[0].plot(latencies, [r["velocity_error_pct"]["mean"] if r else None for r in rows],
                     style, marker="o", label=label)
        axes[1].plot(latencies, [r["seams"]["backtracks"] if r else None for r in rows],
                     style, marker="o", label=label)
        axes[2].plot(latencies, [r["starved_ticks"] if r else None for r in rows],
                     style, marker="o", label=label)
    axes[0].axhspan(-2, 2, color="green", alpha=0.08)
    axes[0].set_ylabel("mean executed velocity error vs v (%)")
    axes[1].set_ylabel("backtracks in the window")
    axes[2].set_ylabel("ticks without an action")
    for ax in axes:
        ax.set_xlabel("added inference latency (ms)")
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Ramp oracle reading the {source}: tracking, backtracks, starvation")
    fig.tight_layout()
    path = out / f"fidelity_tracking_{source}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_merges(window: dict[str, Any], report: dict[str, Any], out: Path) -> Path:
    settings = report["settings"]
    u = settings["velocity"][0] / settings["rate_hz"]
    rows = [(label, row) for label, row in window["configs"].items() if row.get("trace")]
    cols = 4
    n_rows = max(1, -(-len(rows) // cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(4 * cols, 3.2 * n_rows), squeeze=False)
    for ax, (label, row) in zip(axes.flat, rows, strict=False):
        trace = row["trace"]
        k0 = trace["merge_tick"]
        ticks = [k - k0 for k in trace["ticks"]]
        before = [v for k, v in zip(trace["ticks"], trace["published"], strict=True) if k == k0 - 1]
        if before:
            ideal = [before[0] + u * (k + 1) for k in ticks]
            ax.plot(ticks, ideal, color="0.6", lw=4, alpha=0.5, label="ideal")
        ax.plot(ticks, trace["published"], marker=".", lw=1, label="executed")
        ax.plot([k - k0 for k in trace["chunk_ticks"]], trace["chunk"], ":", label="new chunk")
        ax.axvline(0, color="red", lw=0.8, alpha=0.6)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{window['oracle']}, +{window['added_latency_s'] * 1000:.0f} ms: joint 0 "
                 "around a merge (tick 0 = first tick the new chunk drives)")
    fig.tight_layout()
    path = out / f"fidelity_merge_{window['oracle']}_{int(window['added_latency_s'] * 1000)}ms.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_disagreement(windows: list[dict[str, Any]], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(windows)
    labels = list(windows[0]["configs"])
    for i, w in enumerate(windows):
        ratios = [w["configs"][label]["seams"]["ratio"] or 0 for label in labels]
        ax.bar([j + i * width for j in range(len(labels))], ratios, width,
               label=f"+{w['added_latency_s'] * 1000:.0f} ms")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=30,
                  ha="right", fontsize=8)
    ax.set_ylabel("largest step at merges / elsewhere")
    ax.set_title("Chunks that disagree: seam ratio per blend")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path = out / "fidelity_disagreement.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables (one per oracle): what bench/README.md quotes."""
    out: list[str] = []
    windows = [w for w in report["windows"] if "error" not in w]
    for oracle in dict.fromkeys(w["oracle"] for w in windows):
        ws = sorted((w for w in windows if w["oracle"] == oracle),
                    key=lambda w: w["added_latency_s"])
        lat = [f"+{w['added_latency_s'] * 1000:.0f} ms" for w in ws]
        out.append(f"**{oracle}**: velocity error mean % (p99 |err| %) / backtracks at merges "
                   "(anywhere) / lag ticks / seam ratio / starved ticks\n")
        out.append("| config | " + " | ".join(lat) + " |")
        out.append("|---|" + "---|" * len(ws))
        for label in ws[0]["configs"]:
            cells = []
            for w in ws:
                row = w["configs"].get(label)
                if row is None:
                    cells.append("-")
                    continue
                v, s = row["velocity_error_pct"], row["seams"]
                cells.append(f"{_fmt(v['mean'])} ({_fmt(v['p99_abs'])}) / "
                             f"{s['backtracks_at_merge']} ({s['backtracks']}) / "
                             f"{_fmt(row['lag_ticks']['mean'])} / {_fmt(s['ratio'])} / "
                             f"{row['starved_ticks']}")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)
