"""Write the JSON report and the PNG plots; print a short table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np

COLORS = {"stack": "tab:blue", "stack_per_session": "tab:cyan",
          "baseline_onnxruntime": "tab:orange", "baseline_pytorch": "tab:red"}
_MORE = ("tab:green", "tab:purple", "tab:brown", "tab:olive")


def _color(design: str) -> str:
    """A design without a fixed colour (one added later) still gets a distinct one."""
    if design not in COLORS:
        COLORS[design] = _MORE[len([d for d in COLORS if COLORS[d] in _MORE]) % len(_MORE)]
    return COLORS[design]


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


def _cdf(ax: Any, values: list[float], label: str, color: str, alpha: float) -> None:
    if not values:
        return
    xs = np.sort(np.asarray(values))
    ys = np.arange(1, xs.size + 1) / xs.size
    ax.step(xs, ys, where="post", label=label, color=color, alpha=alpha)


def _alpha(i: int, count: int) -> float:
    return 0.35 + 0.65 * (i + 1) / max(1, count)


def plot_model(size: str, section: dict[str, Any], samples: dict[str, Any],
               out_dir: Path, stem: str = "comparison") -> list[Path]:
    """Latency CDFs, jitter histograms, sessions vs achieved rate for one model size."""
    out_dir.mkdir(parents=True, exist_ok=True)
    designs = [d for d in COLORS if d in samples] + [d for d in samples if d not in COLORS]
    paths: list[Path] = []

    cols = max(1, len(designs))
    fig, axes = plt.subplots(2, cols, figsize=(5 * cols, 8), squeeze=False)
    for col, design in enumerate(designs):
        runs = samples[design]
        for i, n in enumerate(sorted(runs)):
            a = _alpha(i, len(runs))
            _cdf(axes[0][col], runs[n].obs_to_command_ms, f"N={n}", _color(design), a)
            _cdf(axes[1][col], runs[n].inference_ms, f"N={n}", _color(design), a)
        axes[0][col].set_title(design)
        for row, axis_label in enumerate(("observation -> command at the robot (ms)",
                                          "inference latency (ms)")):
            ax = axes[row][col]
            ax.set_xscale("log")
            ax.set_xlabel(axis_label)
            ax.set_ylabel("fraction")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"{size} ACT: latency CDFs (darker = more sessions)")
    fig.tight_layout()
    paths.append(out_dir / f"{stem}_{size}_latency_cdf.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(designs) or 1, figsize=(5 * max(1, len(designs)), 4.2),
                             squeeze=False)
    bins = np.logspace(-2, np.log10(2000), 50)
    for ax, design in zip(axes[0], designs, strict=False):
        runs = samples[design]
        for i, n in enumerate(sorted(runs)):
            values = np.clip(np.asarray(runs[n].jitter_ms), 0.011, None)
            if values.size:
                ax.hist(values, bins=bins, histtype="step", label=f"N={n}",
                        color=_color(design), alpha=_alpha(i, len(runs)))
        ax.axvline(5.0, color="k", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(design)
        ax.set_xlabel("|publish period - 1/rate| (ms)")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("periods")
    fig.suptitle(f"{size} ACT: tick period jitter (dashed: 5 ms)")
    fig.tight_layout()
    paths.append(out_dir / f"{stem}_{size}_jitter_hist.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    runs = [r for r in section["runs"] if "achieved_hz" in r]
    for design in designs:
        rows = sorted((r for r in runs if r["design"] == design), key=lambda r: r["n"])
        if not rows:
            continue
        ns = [r["n"] for r in rows]
        med = [r["achieved_hz"]["median"] for r in rows]
        low = [r["achieved_hz"]["median"] - r["achieved_hz"]["min"] for r in rows]
        axes[0].errorbar(ns, med, yerr=[low, [0] * len(low)], marker="o", capsize=3,
                         label=design, color=_color(design))
        p99 = [r["publish_jitter_ms"]["p99"] or np.nan for r in rows]
        axes[1].plot(ns, p99, marker="o", label=design, color=_color(design))
    if runs:
        axes[0].axhline(runs[0]["rate_hz"], color="k", linestyle="--", linewidth=0.8)
    axes[1].axhline(5.0, color="k", linestyle="--", linewidth=0.8)
    axes[0].set_ylabel("achieved command rate at the robot (Hz; bar down to the worst)")
    axes[1].set_ylabel("publish jitter p99 (ms)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sessions (N)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{size} ACT: sessions vs achieved rate and jitter")
    fig.tight_layout()
    paths.append(out_dir / f"{stem}_{size}_rate.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def run_line(size: str, run: dict[str, Any]) -> str:
    if "error" in run:
        return f"[{size}] {run['design']:<21} N={run['n']:<3} ERROR {run['error']}"
    j, o, i = run["publish_jitter_ms"], run["obs_to_command_ms"], run["inference_ms"]
    tri = run.get("triton") or {}
    batch = f" batch {tri['avg_batch_size']}" if tri else ""
    return (f"[{size}] {run['design']:<21} N={run['n']:<3} "
            f"rate {run['achieved_hz']['median']:5.1f}/{run['rate_hz']:.0f} Hz  "
            f"jitter p50/p99 {j['p50']}/{j['p99']} ms  underruns {run['plan_underruns']} "
            f"missed {run['missed_ticks']}  obs->cmd p50/p99 {o['p50']}/{o['p99']} ms  "
            f"infer p50/p99 {i['p50']}/{i['p99']} ms{batch}  "
            f"cpu {run['cpu_cores'].get('process_under_test')}+"
            f"{run['cpu_cores'].get('triton')} cores{_cpu_per_tick(run)}  "
            f"{'OK' if run['ok'] else '--'}")


def _cpu_per_tick(run: dict[str, Any]) -> str:
    cp = run.get("control_plane") or {}
    if not cp.get("session_ticks"):
        return ""
    if "workers_ms_per_session_tick" in cp:  # the loops' processes, as a whole
        return (f"  ms/session-tick: workers {cp['workers_ms_per_session_tick']} "
                f"({cp['workers_cores']} cores; jitter at the robot)")
    return (f"  ms/session-tick: tick {cp['tick_ms_per_session_tick']} "
            f"send {cp['send_ms_per_session_tick']} "
            f"loop thread {cp['event_loop_thread_ms_per_session_tick']} "
            f"other threads {cp['other_threads_ms_per_session_tick']}"
            + (f"; loop waited for a CPU {cp['event_loop_thread_runqueue_wait_share']:.0%}"
               if "event_loop_thread_runqueue_wait_share" in cp else "")
            + _gc(run.get("gc_on_event_loop_thread")) + _probe(run.get("timer_thread_probe")))


def _probe(probe: dict[str, Any] | None) -> str:
    if not probe or not probe["lateness_ms"]["n"]:
        return ""
    late = probe["lateness_ms"]
    split = ""
    if "waiting_for_a_cpu_ms" in probe:
        split = (f" (for a CPU {probe['waiting_for_a_cpu_ms']['p99']}, for the GIL and rest "
                 f"{probe['waiting_for_the_gil_and_rest_ms']['p99']})")
    return f"; a bare timer thread woke late p50/p99 {late['p50']}/{late['p99']} ms{split}"


def _gc(collector: dict[str, Any] | None) -> str:
    if not collector:
        return ""
    longest = max((collector[g]["max_ms"] or 0.0) for g in ("gen0", "gen1", "gen2"))
    return (f"; gc pauses {sum(collector[g]['n'] for g in ('gen0', 'gen1', 'gen2'))} "
            f"(gen2 {collector['gen2']['n']}), longest {longest:.1f} ms, a full one now "
            f"{collector['full_collection_after_ms']:.1f} ms")
