"""python -m export.check REPOSITORY [--triton 26.07] [--json] [--report FILE] [--no-run]

Exit 0: every model passes. Exit 1: one line per problem (stdout), or the JSON report.
Exit 2: bad usage (unknown Triton release, missing dependency).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .versions import DEFAULT_TRITON, TRITON_ORT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export.check",
        description="Check that a Triton model repository loads in a stock Triton container "
        "(onnxruntime backend) and carries what the orchestrator needs.",
    )
    p.add_argument("repository", help="model repository folder (NAME/config.pbtxt, NAME/1/...)")
    p.add_argument("--triton", default=DEFAULT_TRITON,
                   help=f"target container release (default {DEFAULT_TRITON}; known: "
                        f"{min(TRITON_ORT)}..{max(TRITON_ORT)})")
    p.add_argument("--json", action="store_true", help="print the JSON report instead")
    p.add_argument("--report", metavar="FILE", help="also write the JSON report to FILE")
    p.add_argument("--no-run", action="store_true",
                   help="skip running the graphs in ONNX Runtime (static checks only)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from . import UnknownTriton, check_repository

    try:
        report = check_repository(args.repository, args.triton, run=not args.no_run)
    except UnknownTriton as exc:
        sys.stderr.write(f"export.check: {exc}\n")
        return 2
    except ImportError as exc:  # onnx and onnxruntime come with the export extra
        sys.stderr.write(f"export.check: {exc}; install the project's export extra\n")
        return 2
    if args.report:
        with open(args.report, "w") as fh:
            fh.write(json.dumps(report.to_json(), indent=2) + "\n")
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        for line in report.lines():
            sys.stdout.write(line + "\n")
        for note in report.notes:
            sys.stdout.write(f"note: {note}\n")
        served = sum(len(m.versions_served) for m in report.models)
        verdict = "OK" if report.ok else f"FAILED ({len(report.problems)} problem(s))"
        sys.stdout.write(f"{verdict}: {len(report.models)} model(s), {served} served "
                         f"version(s) checked for {report.target.describe()}; graphs run "
                         f"with ONNX Runtime {report.runtime}\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
