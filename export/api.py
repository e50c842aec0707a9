"""``export_checkpoint``: checkpoint folder -> ONNX -> Triton model repository."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from tritonclient.grpc import model_config_pb2 as mc

from orchestrator.exports.source import SOURCE_KEY, FolderSource, provenance_metadata
from orchestrator.triton.model_contract import (
    ModelContract,
    build_model_config,
    render_config,
)

from .checkpoint import CheckpointInfo, inspect_checkpoint, sha256_file
from .errors import ExportError
from .metadata import RobotMetadata, resolve_metadata
from .repository import CONFIG_NAME, StagedModel, check_repository, choose_version
from .repository import validate_model_name as _validate_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    model_dir: Path
    version: int
    onnx_path: Path
    config_path: Path
    contract: ModelContract
    parity_max_abs_error: float
    export_seconds: float  # everything: checks, load, trace, parity, write
    timings: Mapping[str, float]  # seconds per step: load, trace, parity, write
    notes: tuple[str, ...]  # fallbacks the user should know about (default joint names, fps)


def _lerobot_version() -> str:
    try:
        return metadata.version("lerobot")
    except metadata.PackageNotFoundError:  # pragma: no cover - the export extra always has it
        return "unknown"


def check_cameras(info: CheckpointInfo, cameras: Sequence[str] | None) -> None:
    if cameras is None:
        return
    given = [c.strip() for c in cameras if c.strip()]
    if sorted(given) != sorted(info.cameras):
        raise ExportError(
            f"--cameras {','.join(given) or '(empty)'} does not match the checkpoint's cameras "
            f"{','.join(info.cameras)}"
        )


def limits_metadata(limits: Mapping[str, tuple[float, float]], action_names: Sequence[str]) -> str:
    """Per-joint command limits as the orchestrator's safety layer reads them (JSON)."""
    unknown = sorted(set(limits) - set(action_names))
    if unknown:
        raise ExportError(f"--joint-limits names unknown joints {unknown}; the action joints "
                          f"are {list(action_names)}")
    bad = [n for n, (lo, hi) in limits.items() if not (math.isfinite(lo) and math.isfinite(hi)
                                                        and lo < hi)]
    if bad:
        raise ExportError(f"--joint-limits needs finite LOW < HIGH for {bad}")
    return json.dumps({n: [float(lo), float(hi)] for n, (lo, hi) in limits.items()})


def check_accelerator(accelerator: str, precision: str, kind: str) -> None:
    if accelerator not in ("none", "tensorrt") or precision not in ("fp32", "fp16"):
        raise ExportError(f"--accelerator must be none or tensorrt and --precision fp32 or "
                          f"fp16, got {accelerator!r} / {precision!r}")
    if precision == "fp16" and accelerator != "tensorrt":
        raise ExportError("--precision fp16 needs --accelerator tensorrt (the onnxruntime "
                          "backend runs fp16 only through TensorRT)")
    if accelerator == "tensorrt" and kind != "gpu":
        raise ExportError("--accelerator tensorrt needs --kind gpu (TensorRT runs on GPU "
                          "instances only)")


def fp16_parity_or_note(onnx_path: Path, config: mc.ModelConfig) -> str:
    """TensorRT fp16 against fp32 where this machine has a GPU with TensorRT (fails the
    export above the tolerance); elsewhere a note saying it was not checked."""
    from .check.graph import fp16_parity
    from .check.report import Report
    from .check.versions import DEFAULT_TRITON, target

    report = Report(str(onnx_path.parent), target(DEFAULT_TRITON), "")
    note = fp16_parity(report, config.name, "new", onnx_path, config)
    if report.problems:
        raise ExportError(f"{report.problems[0].message}; nothing was written")
    return note


def build_contract(
    info: CheckpointInfo,
    robot: RobotMetadata,
    name: str,
    version_number: int,
    extra_info: Mapping[str, str] | None = None,
) -> ModelContract:
    provenance = {
        "lerobot_version": _lerobot_version(),
        "model_sha256": info.model_sha256,
        "stats_sha256": info.stats_sha256,
        "normalization": ",".join(f"{k}={v}" for k, v in sorted(info.normalization.items())),
        "names_source": robot.source,
        "demo": "true" if info.is_demo else "false",
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    provenance.update(extra_info or {})
    return ModelContract(
        name=name,
        version=str(version_number),
        state_names=robot.state_names,
        action_names=robot.action_names,
        cameras=info.cameras,
        image_sizes=dict(info.image_sizes),
        chunk_size=info.chunk_size,
        n_action_steps=info.n_action_steps,
        fps=robot.fps,
        info=provenance,
    )


def export_checkpoint(
    checkpoint_dir: str | Path,
    repository: str | Path,
    name: str,
    *,
    version: int | None = None,
    max_batch_size: int = 32,
    max_queue_delay_us: int = 2000,
    instances: int = 1,
    kind: Literal["gpu", "cpu"] = "gpu",
    dataset_info: str | Path | None = None,
    joint_names: Sequence[str] | None = None,
    fps: float | None = None,
    cameras: Sequence[str] | None = None,
    parity_tolerance: float = 1e-4,
    parity_batch_sizes: Sequence[int] = (1, 4),
    extra_info: Mapping[str, str] | None = None,
    joint_limits: Mapping[str, tuple[float, float]] | None = None,
    on_step: Callable[[str], None] | None = None,
    accelerator: Literal["none", "tensorrt"] = "none",
    precision: Literal["fp32", "fp16"] = "fp32",
) -> ExportResult:
    """Export one ACT checkpoint as a new version of model ``name`` in ``repository``.

    Raises ExportError (one-line message) on bad input or failed parity; the repository
    is then unchanged. ``extra_info`` adds provenance keys to the contract's info; without a
    ``source`` key the folder itself is recorded as the source. ``on_step`` hears "checking
    parity" and "writing" as the export reaches them.
    """
    started = time.perf_counter()
    step = on_step or (lambda _: None)
    if SOURCE_KEY not in (extra_info or {}):
        folder = FolderSource(Path(os.path.abspath(os.path.expanduser(checkpoint_dir))))
        extra_info = {**provenance_metadata(folder), **(extra_info or {})}
    repo = Path(repository)
    _validate_name(name)
    if max_batch_size < 1 or instances < 1 or max_queue_delay_us < 0:
        raise ExportError("--max-batch-size and --instances must be >= 1, delay >= 0")
    if kind not in ("gpu", "cpu"):
        raise ExportError(f"--kind must be gpu or cpu, got {kind!r}")
    check_accelerator(accelerator, precision, kind)
    logger.info("inspecting checkpoint %s", checkpoint_dir)
    info = inspect_checkpoint(checkpoint_dir)
    check_cameras(info, cameras)
    robot = resolve_metadata(
        info.state_dim, info.action_dim, dataset_info=dataset_info, joint_names=joint_names, fps=fps
    )
    for note in robot.notes:
        logger.warning("%s", note)
    if joint_limits:
        extra_info = {**(extra_info or {}),
                      "joint_limits": limits_metadata(joint_limits, robot.action_names)}
    check_repository(repo, name)
    chosen = choose_version(repo.absolute() / name, version)

    # Heavy imports only once the cheap checks passed: bad input fails fast.
    from .graph import export_onnx, load_policy
    from .parity import max_abs_error

    with StagedModel(repo, name) as staged:
        logger.info("loading checkpoint with LeRobot (offline, CPU)")
        t0 = time.perf_counter()
        loaded = load_policy(info)
        timings = {"load": time.perf_counter() - t0}
        logger.info(
            "exporting ONNX graph (%d camera(s), chunk %d)", len(info.cameras), info.chunk_size
        )
        t0 = time.perf_counter()
        export_onnx(loaded, info, staged.onnx_path)
        timings["trace"] = time.perf_counter() - t0
        logger.info("traced in %.1f s; checking parity with ONNX Runtime", timings["trace"])
        step("checking parity")
        t0 = time.perf_counter()
        err = max_abs_error(loaded, info, staged.onnx_path, parity_batch_sizes)
        timings["parity"] = time.perf_counter() - t0
        logger.info("parity: max abs error %.3g (tolerance %g)", err, parity_tolerance)
        if not math.isfinite(err) or err > parity_tolerance:
            raise ExportError(
                f"parity check failed: max abs error {err:.3g} between ONNX Runtime and LeRobot "
                f"exceeds {parity_tolerance:g}; nothing was written"
            )
        contract = build_contract(
            info,
            robot,
            name,
            chosen,
            {"onnx_sha256": sha256_file(staged.onnx_path), **(extra_info or {})},
        )
        config = build_model_config(
            contract,
            max_batch_size=max_batch_size,
            max_queue_delay_us=max_queue_delay_us,
            instances=instances,
            kind=kind,
            accelerator=accelerator,
            precision=precision,
        )
        notes = robot.notes
        if precision == "fp16":
            notes = (*notes, fp16_parity_or_note(staged.onnx_path, config))
        step("writing")
        t0 = time.perf_counter()
        version_dir = staged.commit(render_config(config), chosen, auto=version is None)
        timings["write"] = time.perf_counter() - t0
    if int(version_dir.name) != chosen:  # a concurrent export took the one chosen first
        chosen = int(version_dir.name)
        contract = dataclasses.replace(contract, version=str(chosen))
    model_dir = version_dir.parent
    return ExportResult(
        model_dir=model_dir,
        version=chosen,
        onnx_path=version_dir / "model.onnx",
        config_path=model_dir / CONFIG_NAME,
        contract=contract,
        parity_max_abs_error=err,
        export_seconds=time.perf_counter() - started,
        timings=timings,
        notes=notes,
    )
