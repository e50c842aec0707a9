"""``python -m bench.fidelity``: how closely the executed commands follow what an oracle
policy meant, per blend, with and without observation-time alignment, at added latencies.

Writes ``bench/results/fidelity.json`` and plots; ``--quick`` is the smoke run the tests use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from bench.comparison.runner import machine

from .report import markdown, plot_all, summary_lines
from .run import Config, Options, run

log = logging.getLogger("bench.fidelity")


def quick_options() -> Options:
    return Options(
        latencies_s=[0.3], variants=["camera"], duration_s=3.0, warmup_s=1.0,
        configs=[Config("crossfade", "crossfade", True),
                 Config("replace (snapshot)", "replace", False),
                 Config("lerobot weighted_average", "weighted_average", False, lerobot=True)],
        disagreement_latencies_s=[],
    )


def parse(argv: list[str] | None) -> tuple[Options, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench.fidelity", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short window (smoke test)")
    parser.add_argument("--latencies", type=str, default=None,
                        help="added latencies in seconds, comma-separated (default 0,0.1,0.3,0.8)")
    parser.add_argument("--variants", type=str, default=None,
                        help="oracle sources: state,camera (default both)")
    parser.add_argument("--duration", type=float, default=None, help="seconds measured per window")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    opts = quick_options() if args.quick else Options()
    if args.latencies:
        try:
            opts.latencies_s = [float(x) for x in args.latencies.split(",")]
        except ValueError:
            parser.error(f"--latencies must be numbers, got {args.latencies!r}")
        if any(x < 0 or x > 5 for x in opts.latencies_s):
            parser.error("--latencies must be within 0..5 s")
    if args.variants:
        opts.variants = args.variants.split(",")
        if not set(opts.variants) <= {"state", "camera"}:
            parser.error(f"--variants must be state and/or camera, got {args.variants!r}")
    if args.duration is not None:
        if not 1.0 <= args.duration <= 600:
            parser.error("--duration must be within 1..600 s")
        opts.duration_s = args.duration
    return opts, args.out


def main(argv: list[str] | None = None) -> int:
    opts, out = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()

    def progress(window: dict[str, Any]) -> None:
        for line in summary_lines(window):
            sys.stderr.write(line + "\n")

    report: dict[str, Any] = {
        "benchmark": "control fidelity with an oracle policy (issue 13)",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "settings": {
            "rate_hz": opts.rate_hz, "chunk_size": opts.chunk_size,
            "velocity": list(opts.velocity), "camera_fps": opts.camera_fps,
            "camera_hw": list(opts.camera_hw), "joint_rate_hz": opts.joint_rate,
            "duration_s": opts.duration_s, "warmup_s": opts.warmup_s,
            "latencies_s": opts.latencies_s, "variants": opts.variants,
            "disagreement": opts.disagreement,
            "disagreement_latencies_s": opts.disagreement_latencies_s,
            "configs": [c.__dict__ for c in opts.configs], "max_step": opts.max_step,
        },
    }
    report.update(asyncio.run(run(opts, progress)))
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fidelity.json"
    path.write_text(json.dumps(report, indent=1))
    (out / "fidelity.md").write_text(markdown(report))
    pngs = plot_all(report, out)
    sys.stderr.write(f"wrote {path} and {len(pngs)} plots in {report['elapsed_s']} s\n")
    return 0 if all("error" not in w for w in report["windows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
