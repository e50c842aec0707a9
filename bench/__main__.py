"""``python -m bench``: this stack against its earlier per-session timers and the
per-session design (issues 8, 12).

Writes bench/results/<label>.json (default comparison.json) and <label>_<model>_*.png. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bench.comparison.models import SPECS
from bench.comparison.report import plot_model, run_line, write_json
from bench.comparison.runner import DEFAULT_DESIGNS, DESIGNS, Options, run

RESULTS = Path(__file__).parent / "results"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--models", default="small,default",
                   help="model sizes: small (96x128 ResNet18 ACT), default (LeRobot ACT "
                        "defaults, 480x640), light (48x64, chunk 100: little inference), "
                        "tiny (smoke tests)")
    p.add_argument("--n", default="1,2,4,8,16,32",
                   help="session counts for the small, light and tiny models")
    p.add_argument("--n-default", default="1,2,4", help="session counts for the default ACT")
    p.add_argument("--designs", default=",".join(DEFAULT_DESIGNS),
                   help=f"any of {', '.join(DESIGNS)} (workers_2: sessions in two Ray workers)")
    p.add_argument("--pytorch-max-n", type=int, default=8,
                   help="largest N for the PyTorch baseline (each session loads its own model)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--duration-default", type=float, default=20.0,
                   help="measured seconds per run of the default ACT (a chunk lasts 3.3 s)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after the first commands")
    p.add_argument("--camera-fps", type=float, default=10.0)
    p.add_argument("--camera-size", type=_size, default=(128, 96), help="WxH of the cameras")
    p.add_argument("--joint-rate", type=float, default=10.0, help="robot joint publish rate")
    p.add_argument("--rate", type=float, default=None, help="control rate (default: model fps)")
    p.add_argument("--ort-threads", type=int, default=1,
                   help="ONNX Runtime threads, in Triton and in each baseline session")
    p.add_argument("--stale-after", type=float, default=None,
                   help="the stack's stale_after_s (default 0.5 s: raise it for cameras "
                        "slower than about 3 fps)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for JSON and PNGs")
    p.add_argument("--label", default="comparison", help="name of the JSON and PNG files")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--switch-interval", type=float, default=None, metavar="MS",
                   help="the bench process's GIL switch interval (sys.setswitchinterval; "
                        "Python's default 5 ms): the in-process orchestrator's too")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="the in-process orchestrator's event loop: asyncio as `make run`, "
                        "uvloop as `python -m orchestrator` and the Ray workers")
    args = p.parse_args(argv)
    unknown = [m for m in _names(args.models) if m not in SPECS]
    unknown += [d for d in _names(args.designs) if d not in DESIGNS]
    if unknown:
        p.error(f"unknown model sizes or designs: {unknown} (models: {sorted(SPECS)}; "
                f"designs: {list(DESIGNS)})")
    return args


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def options(args: argparse.Namespace) -> Options:
    ns = {"small": _ints(args.n), "default": _ints(args.n_default), "tiny": _ints(args.n),
          "light": _ints(args.n)}
    return Options(
        models=_names(args.models), n_by_model=ns, designs=_names(args.designs),
        pytorch_max_n=args.pytorch_max_n, duration_s=args.duration,
        duration_by_model={"default": args.duration_default}, warmup_s=args.warmup,
        camera_fps=args.camera_fps, camera_size=args.camera_size, joint_rate=args.joint_rate,
        rate_hz=args.rate, ort_threads=args.ort_threads, stale_after_s=args.stale_after,
        event_loop=args.loop,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The orchestrator raises the root logger to INFO for its in-memory log buffer (kept, as
    # in production); the console shows warnings only.
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    opts = options(args)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval / 1000.0)
    bench = run(opts, on_run=lambda m, r: print(run_line(m, r), flush=True))
    if opts.event_loop == "uvloop":
        import uvloop

        report, samples = uvloop.run(bench)
    else:
        report, samples = asyncio.run(bench)
    path = args.out / f"{args.label}.json"
    write_json(report, path)
    print(f"\nwrote {path}")
    for size, section in report["models"].items():
        if not args.no_plots:
            for png in plot_model(size, section, samples[size], args.out, args.label):
                print(f"wrote {png}")
        for design, merit in section["figure_of_merit"].items():
            print(f"[{size}] {design}: largest N holding the rate with p99 jitter < 5 ms and "
                  f"no underruns: {merit['max_n']} (rate held up to N={merit['max_n_rate_held']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
