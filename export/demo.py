"""``python -m export.demo --repository model_repository --name act_demo``

Builds a small ACT checkpoint with RANDOM weights and exports it with the real exporter, so
the local stack runs out of the box. The model is labelled demo (``demo=true`` in its
metadata): it moves a robot, but not usefully."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import ExportError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.demo", description=__doc__)
    parser.add_argument("--repository", default="model_repository")
    parser.add_argument("--name", default="act_demo")
    parser.add_argument("--cameras", default="front", help="comma-separated camera names")
    parser.add_argument("--image-size", default="96x128", help="HEIGHTxWIDTH of every camera")
    parser.add_argument("--kind", choices=("gpu", "cpu"), default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="export.demo: %(message)s")
    try:
        return _export(args)
    except KeyboardInterrupt:  # Ctrl-C of the local stack reaches its exporter too
        sys.stderr.write("export.demo: interrupted; the repository is unchanged\n")
        return 130


def _export(args: argparse.Namespace) -> int:
    # Imported here, inside the interrupt handling: torch takes seconds to import.
    from .api import export_checkpoint
    from .synthetic import make_demo_checkpoint

    try:
        height, width = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        sys.stderr.write(f"export.demo: error: --image-size {args.image_size!r} is not HxW\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="act-demo-") as tmp:
        built = make_demo_checkpoint(
            Path(tmp), cameras=args.cameras.split(","), image_size=(height, width)
        )
        try:
            result = export_checkpoint(
                built.path, args.repository, args.name, kind=args.kind,
                dataset_info=built.dataset_info,
            )
        except ExportError as exc:
            sys.stderr.write(f"export.demo: error: {exc}\n")
            return 1
    sys.stdout.write(
        f"DEMO model (random weights) {args.name} version {result.version} written to "
        f"{result.model_dir}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
