"""python -m export SOURCE --repository model_repository [--name NAME] [options]

SOURCE: a checkpoint folder or a hub repo id ``org/name[@revision]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .errors import ExportError
from .sources import export_source, parse_export_source


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",")]


def _say(text: str, stream: TextIO = sys.stdout) -> None:
    stream.write(text + "\n")


def _limits(text: str) -> dict[str, tuple[float, float]]:
    """``name=LOW:HIGH,name=LOW:HIGH``"""
    limits: dict[str, tuple[float, float]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, span = part.partition("=")
        low, sep2, high = span.partition(":")
        try:
            if not (sep and sep2 and name.strip()):
                raise ValueError
            limits[name.strip()] = (float(low), float(high))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not NAME=LOW:HIGH") from None
    return limits


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a LeRobot ACT checkpoint to ONNX as a new version in a Triton "
        "model repository (onnxruntime backend), with normalization baked in.",
    )
    p.add_argument(
        "checkpoint_dir",
        metavar="SOURCE",
        help="LeRobot checkpoint folder (config.json, ...) or hub repo id org/name[@revision] "
        "(fetched through huggingface_hub: HF_HOME, HF_HUB_OFFLINE, HF_TOKEN)",
    )
    p.add_argument("--repository", default="model_repository", help="model repository folder")
    p.add_argument(
        "--name", help="model name in the repository (default: derived from SOURCE)"
    )
    p.add_argument("--version", type=int, default=None, help="version (default: latest + 1)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-queue-delay-us", type=int, default=2000)
    p.add_argument("--instances", type=int, default=1, help="model instances per device")
    p.add_argument("--kind", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--accelerator", choices=("none", "tensorrt"), default="none",
                   help="tensorrt: the onnxruntime backend runs the graph through TensorRT "
                        "(engine cache in /var/cache/tensorrt, see docker-compose.yml)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="TensorRT precision (fp16 needs --accelerator tensorrt; its parity "
                        "is checked only where a GPU with TensorRT is present)")
    p.add_argument(
        "--dataset-info",
        help="the training dataset's meta/info.json (or dataset folder): joint names and fps",
    )
    p.add_argument("--joint-names", type=_names, help="comma-separated joint names")
    p.add_argument("--fps", type=float, help="control rate the policy was trained at")
    p.add_argument(
        "--cameras", type=_names, help="comma-separated camera names the checkpoint must have"
    )
    p.add_argument(
        "--parity-tolerance",
        type=float,
        default=1e-4,
        help="max abs error allowed between ONNX Runtime and LeRobot (default 1e-4)",
    )
    p.add_argument(
        "--joint-limits",
        type=_limits,
        help="per-joint command limits recorded in the model's metadata for the "
        "orchestrator's safety layer: NAME=LOW:HIGH,... (default: -100..100, gripper 0..100)",
    )
    p.add_argument(
        "--result-json",
        type=Path,
        help="also write {ok, model, version, source, error} to this file (for programs)",
    )
    p.add_argument(
        "--status-json",
        type=Path,
        help="keep {step} in this file as the export goes: fetching, exporting, "
        "checking parity, writing (for programs)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _write_result(path: Path | None, **result: Any) -> None:
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)


def _check_writable(path: Path | None, flag: str) -> None:
    """Fail before the export, not with a traceback after minutes of it."""
    if path is None:
        return
    if path.is_dir():
        raise ExportError(f"{flag} {path} is a folder")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text("")
        tmp.unlink()
    except OSError as exc:
        raise ExportError(f"cannot write {flag} {path}: {exc.strerror or exc}") from exc


def _default_name(source: str) -> str | None:
    from orchestrator.exports.source import default_model_name

    try:
        return default_model_name(parse_export_source(source))
    except ExportError:
        return None


class Stopped(KeyboardInterrupt):
    """SIGTERM (``docker stop``, the export worker's timeout), raised where the export
    is, so the staging folder (the size of the model) goes as on Ctrl-C."""


def _stop(signum: int, frame: object) -> None:
    raise Stopped


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="export: %(message)s",
        stream=sys.stderr,
    )
    # Third-party libraries log a lot at INFO; progress lines are ours.
    for noisy in ("torch", "lerobot", "onnxruntime", "onnx", "onnxscript"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    failed = {"ok": False, "version": None, "source": args.checkpoint_dir}
    try:
        _check_writable(args.status_json, "--status-json")
        _check_writable(args.result_json, "--result-json")
    except ExportError as exc:
        # Nowhere to write the result to: the message is all there is.
        _say(f"export: error: {exc}", sys.stderr)
        return 1
    try:
        exported = export_source(
            args.checkpoint_dir,
            args.repository,
            args.name,
            on_step=lambda step: _write_result(args.status_json, step=step),
            version=args.version,
            max_batch_size=args.max_batch_size,
            max_queue_delay_us=args.max_queue_delay_us,
            instances=args.instances,
            kind=args.kind,
            dataset_info=args.dataset_info,
            joint_names=args.joint_names,
            fps=args.fps,
            cameras=args.cameras,
            parity_tolerance=args.parity_tolerance,
            joint_limits=args.joint_limits,
            accelerator=args.accelerator,
            precision=args.precision,
        )
    except ExportError as exc:
        _say(f"export: error: {exc}", sys.stderr)
        model = args.name or _default_name(args.checkpoint_dir)
        _write_result(args.result_json, **failed, model=model, error=str(exc))
        return 1
    except KeyboardInterrupt as exc:
        why = "stopped" if isinstance(exc, Stopped) else "interrupted"
        _say(f"export: {why}; the repository is unchanged", sys.stderr)
        model = args.name or _default_name(args.checkpoint_dir)
        _write_result(args.result_json, **failed, model=model, error=why)
        return 143 if isinstance(exc, Stopped) else 130
    except Exception as exc:
        # Not bad input: keep the traceback for the log, and one line for programs.
        logging.getLogger("export").exception("export failed")
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        model = args.name or _default_name(args.checkpoint_dir)
        _write_result(args.result_json, **failed, model=model, error=reason)
        return 1
    result = exported.result
    _write_result(
        args.result_json,
        ok=True,
        model=exported.name,
        version=result.version,
        source=exported.source,
        error=None,
    )
    c = result.contract
    _say(f"parity max abs error: {result.parity_max_abs_error:.3g}")
    _say(f"exported {c.name} version {result.version} -> {result.onnx_path}")
    _say(f"config: {result.config_path}")
    _say(f"source: {exported.source}")
    sizes = ", ".join(f"{k} {c.image_sizes[k][0]}x{c.image_sizes[k][1]}" for k in c.cameras)
    _say(
        f"cameras {sizes}; state {c.state_dim}, action {c.action_dim}, chunk {c.chunk_size}, "
        f"n_action_steps {c.n_action_steps}, fps {c.fps:g}"
    )
    for note in result.notes:
        _say(f"note: {note}")
    _say(f"took {result.export_seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
