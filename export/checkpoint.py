"""Read and validate a LeRobot ACT checkpoint folder without importing torch.

Every check the user can trip (missing folder, wrong policy type, missing
stats) runs here first, so a bad input fails in well under a second and
before anything touches the model repository.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.exports.resolve import SourceError, policy_folder
from orchestrator.triton.model_contract import ACTION_OUTPUT, IMAGE_PREFIX, STATE_INPUT

from .errors import ExportError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PREPROCESSOR_FILE = "policy_preprocessor.json"
POSTPROCESSOR_FILE = "policy_postprocessor.json"
# Written by tests/support (make_demo_checkpoint) next to random-weight demo models, so
# every export of such a checkpoint is labelled demo in its contract.
DEMO_MARKER_FILE = "demo_model.json"

# Stats each LeRobot normalization mode reads (lerobot/processor/normalize_processor.py).
_MODE_STATS: Mapping[str, tuple[str, str]] = {
    "MEAN_STD": ("mean", "std"),
    "MIN_MAX": ("min", "max"),
    "QUANTILES": ("q01", "q99"),
    "QUANTILE10": ("q10", "q90"),
}


@dataclass(frozen=True)
class CheckpointInfo:
    """What the exporter needs to know about a checkpoint, read from its files."""

    path: Path
    state_dim: int
    action_dim: int
    cameras: tuple[str, ...]  # in the checkpoint's input order, which the model depends on
    image_sizes: Mapping[str, tuple[int, int]]  # camera -> (height, width)
    chunk_size: int
    n_action_steps: int
    normalization: Mapping[str, str]  # feature type -> LeRobot NormalizationMode name
    stats_files: tuple[Path, ...]
    model_sha256: str
    stats_sha256: str
    is_demo: bool


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stats_digest(files: tuple[Path, ...]) -> str:
    """One hash over all normalization stats files (name and bytes, sorted by name)."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ExportError(f"{what} {path} is not a JSON object")
    return data


def _normalizer_step(folder: Path, pipeline_file: str, registry_name: str) -> dict[str, Any]:
    path = folder / pipeline_file
    if not path.is_file():
        raise ExportError(
            f"missing normalization stats: {path} not found (LeRobot >= 0.4 saves the pre/post "
            "processors next to the weights; this checkpoint cannot be exported without them)"
        )
    steps = _read_json(path, "processor config").get("steps", [])
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, dict) and step.get("registry_name") == registry_name:
            return step
    raise ExportError(f"missing normalization stats: {path} has no {registry_name!r} step")


def _stats_keys(folder: Path, step: dict[str, Any], pipeline_file: str) -> tuple[Path, set[str]]:
    state_file = step.get("state_file")
    if not isinstance(state_file, str) or not (folder / state_file).is_file():
        raise ExportError(
            f"missing normalization stats: {pipeline_file} names stats file {state_file!r}, "
            f"which is not in {folder}"
        )
    from safetensors import safe_open

    path = folder / state_file
    try:
        with safe_open(str(path), framework="numpy") as fh:
            keys = set(fh.keys())
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ExportError(f"cannot read normalization stats {path}: {exc}") from exc
    return path, keys


def _require_stats(
    step: dict[str, Any], keys: set[str], features: Mapping[str, str], stats_path: Path
) -> dict[str, str]:
    """Check the stats file holds what each feature's normalization mode reads."""
    norm_map = step.get("config", {}).get("norm_map", {})
    if not isinstance(norm_map, dict):
        raise ExportError(f"malformed norm_map in the processor config next to {stats_path}")
    for key, ftype in features.items():
        mode = str(norm_map.get(ftype, "IDENTITY"))
        if mode == "IDENTITY":
            continue
        if mode not in _MODE_STATS:
            raise ExportError(f"unsupported normalization mode {mode!r} for {key}")
        missing = [s for s in _MODE_STATS[mode] if f"{key}.{s}" not in keys]
        if missing:
            raise ExportError(
                f"missing normalization stats: {stats_path.name} lacks {', '.join(missing)} "
                f"for {key} ({mode})"
            )
    return {str(k): str(v) for k, v in norm_map.items()}


def _features(config: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    feats = config.get(section)
    if not isinstance(feats, dict):
        raise ExportError(f"config.json has no {section}: not a trained LeRobot policy")
    return feats


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Validate a checkpoint folder and describe it; raises ExportError on bad input."""
    try:
        folder = policy_folder(Path(path))
    except SourceError as exc:
        raise ExportError(str(exc)) from exc
    if not (folder / CONFIG_FILE).is_file():
        raise ExportError(f"not a LeRobot checkpoint: {folder / CONFIG_FILE} not found")
    config = _read_json(folder / CONFIG_FILE, "policy config")
    policy_type = config.get("type")
    if policy_type != "act":
        raise ExportError(
            f"not an ACT checkpoint: {folder / CONFIG_FILE} has type {policy_type!r}, "
            "this exporter only handles 'act'"
        )
    if not (folder / WEIGHTS_FILE).is_file():
        raise ExportError(f"missing weights: {folder / WEIGHTS_FILE} not found")
    for file in folder.glob("*.safetensors"):
        _not_an_lfs_pointer(file)
    try:
        return _describe(folder, config)
    except ExportError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        # A hand-edited config (a feature without its shape, a null where a number goes):
        # LeRobot never writes these, and a traceback would say nothing of where.
        raise ExportError(f"malformed checkpoint config in {folder} (config.json or a "
                          f"processor's): {type(exc).__name__}: {exc}") from exc


def _not_an_lfs_pointer(path: Path) -> None:
    """A checkout without Git LFS holds a small text file where the weights should be."""
    with path.open("rb") as fh:
        if fh.read(23) == b"version https://git-lfs":
            raise ExportError(f"{path} is a Git LFS pointer, not the file: fetch it "
                              "(git lfs pull; in GitHub Actions, checkout with lfs: true)")


def _describe(folder: Path, config: dict[str, Any]) -> CheckpointInfo:
    inputs = _features(config, "input_features")
    outputs = _features(config, "output_features")
    if "observation.environment_state" in inputs:
        raise ExportError("ACT checkpoints with observation.environment_state are not supported")
    if STATE_INPUT not in inputs:
        raise ExportError(f"the checkpoint has no {STATE_INPUT} input; it is required")
    if ACTION_OUTPUT not in outputs:
        raise ExportError(f"the checkpoint has no {ACTION_OUTPUT!r} output")
    cameras: list[str] = []
    sizes: dict[str, tuple[int, int]] = {}
    for key, feat in inputs.items():
        if feat.get("type") != "VISUAL":
            continue
        if not key.startswith(IMAGE_PREFIX):
            raise ExportError(f"image input {key!r} is not named {IMAGE_PREFIX}<camera>")
        shape = list(feat.get("shape", []))
        if len(shape) != 3 or shape[0] != 3:
            raise ExportError(f"image input {key} has shape {shape}, expected [3, H, W] (RGB)")
        camera = key.removeprefix(IMAGE_PREFIX)
        cameras.append(camera)
        sizes[camera] = (int(shape[1]), int(shape[2]))
    if not cameras:
        raise ExportError("the checkpoint has no camera input (observation.images.*)")

    pre_step = _normalizer_step(folder, PREPROCESSOR_FILE, "normalizer_processor")
    post_step = _normalizer_step(folder, POSTPROCESSOR_FILE, "unnormalizer_processor")
    pre_path, pre_keys = _stats_keys(folder, pre_step, PREPROCESSOR_FILE)
    post_path, post_keys = _stats_keys(folder, post_step, POSTPROCESSOR_FILE)
    observed = {key: str(feat.get("type")) for key, feat in inputs.items()}
    norm_map = _require_stats(pre_step, pre_keys, observed, pre_path)
    _require_stats(post_step, post_keys, {ACTION_OUTPUT: "ACTION"}, post_path)

    stats_files = (pre_path, post_path)
    return CheckpointInfo(
        path=folder,
        state_dim=int(inputs[STATE_INPUT]["shape"][0]),
        action_dim=int(outputs[ACTION_OUTPUT]["shape"][0]),
        cameras=tuple(cameras),
        image_sizes=sizes,
        chunk_size=int(config.get("chunk_size", 0)),
        n_action_steps=int(config.get("n_action_steps", 0)),
        normalization=norm_map,
        stats_files=stats_files,
        model_sha256=sha256_file(folder / WEIGHTS_FILE),
        stats_sha256=stats_digest(stats_files),
        is_demo=(folder / DEMO_MARKER_FILE).is_file(),
    )
