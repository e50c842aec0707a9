"""Joint names and fps: not stored in an ACT checkpoint, so resolved from the user.

LeRobot keeps them in the dataset's ``meta/info.json``:
``features["observation.state"]["names"]``, ``features["action"]["names"]``, ``fps``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.triton.model_contract import ACTION_OUTPUT, STATE_INPUT

from .errors import ExportError

DEFAULT_FPS = 30.0


@dataclass(frozen=True)
class RobotMetadata:
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    fps: float
    source: str  # "dataset-info", "arguments", "default" or a mix, for provenance
    notes: tuple[str, ...] = field(default=())


def _names_from_feature(feature: Any, key: str, info_path: Path) -> list[str] | None:
    if not isinstance(feature, dict) or feature.get("names") is None:
        return None
    names = feature["names"]
    # Older LeRobot datasets nest the list: {"motors": [...]}.
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ExportError(f"{info_path}: features[{key!r}].names is not a list of joint names")
    return list(names)


def read_dataset_info(path: Path) -> tuple[list[str] | None, list[str] | None, float | None]:
    """(state names, action names, fps) from a LeRobot ``meta/info.json``."""
    if path.is_dir():
        path = path / "meta" / "info.json" if (path / "meta").is_dir() else path / "info.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ExportError(f"dataset info not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"cannot read dataset info {path}: {exc}") from exc
    if not isinstance(info, dict):
        raise ExportError(f"dataset info {path} is not a JSON object")
    features = info.get("features", {})
    if not isinstance(features, dict):
        raise ExportError(f"dataset info {path} has no features mapping")
    state = _names_from_feature(features.get(STATE_INPUT), STATE_INPUT, path)
    action = _names_from_feature(features.get(ACTION_OUTPUT), ACTION_OUTPUT, path)
    fps = info.get("fps")
    return state, action, (float(fps) if isinstance(fps, int | float) else None)


def _check(names: Sequence[str], dim: int, what: str, origin: str) -> tuple[str, ...]:
    if len(names) != dim:
        raise ExportError(
            f"{origin} gives {len(names)} {what} names but the checkpoint has {dim} {what} values"
        )
    if len(set(names)) != len(names) or any(not n.strip() for n in names):
        raise ExportError(f"{origin}: {what} names must be unique and non-empty: {list(names)}")
    return tuple(names)


def resolve_metadata(
    state_dim: int,
    action_dim: int,
    *,
    dataset_info: str | Path | None = None,
    joint_names: Sequence[str] | None = None,
    fps: float | None = None,
) -> RobotMetadata:
    """Explicit arguments win over the dataset info, which wins over the defaults."""
    state: list[str] | None = None
    action: list[str] | None = None
    info_fps: float | None = None
    sources: list[str] = []
    notes: list[str] = []
    if dataset_info is not None:
        state, action, info_fps = read_dataset_info(Path(dataset_info))
        sources.append("dataset-info")
    if joint_names is not None:
        names = [n.strip() for n in joint_names]
        if state_dim != action_dim:
            raise ExportError(
                f"--joint-names gives one list but state ({state_dim}) and action ({action_dim}) "
                "sizes differ; use --dataset-info"
            )
        state, action = names, list(names)
        sources.append("arguments")
    if fps is not None:
        info_fps = fps
        if "arguments" not in sources:
            sources.append("arguments")
    if state is None or action is None:
        notes.append(
            "no joint names given (--dataset-info or --joint-names): using joint_0..joint_N"
        )
        sources.append("default")
        state = state or [f"joint_{i}" for i in range(state_dim)]
        action = action or [f"joint_{i}" for i in range(action_dim)]
    if info_fps is None:
        notes.append(f"no fps given (--dataset-info or --fps): assuming {DEFAULT_FPS:g} fps")
        info_fps = DEFAULT_FPS
        if "default" not in sources:
            sources.append("default")
    if not math.isfinite(info_fps) or info_fps <= 0:
        raise ExportError(f"fps must be a positive number, got {info_fps}")
    from_info = dataset_info is not None and joint_names is None
    origin = "the dataset info" if from_info else "--joint-names"
    return RobotMetadata(
        state_names=_check(state, state_dim, "state", origin),
        action_names=_check(action, action_dim, "action", origin),
        fps=float(info_fps),
        source="+".join(sources),
        notes=tuple(notes),
    )
