"""Plain helpers around the exporter for tests and benches (no pytest here).

``export_tiny_repository`` builds the tiny one-camera ACT checkpoint and exports it into a
fresh model repository with the real exporter: the session fixture ``exported_repository``
is a thin wrapper around it. ``snapshot_tree`` lets a test prove a folder is unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from export import ExportResult, export_checkpoint
from export.synthetic import BuiltCheckpoint, make_one_camera_checkpoint

TINY_MODEL_NAME = "tiny_act"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ExportedRepository:
    repository: Path  # the model repository folder, holding ``name/config.pbtxt``, ``name/1``
    name: str
    checkpoint: BuiltCheckpoint
    result: ExportResult


def export_tiny_repository(
    root: str | Path, *, name: str = TINY_MODEL_NAME, kind: str = "cpu"
) -> ExportedRepository:
    """Build ``root/checkpoint`` and export it as ``root/model_repository/<name>/1``.

    ``kind`` defaults to cpu: the local Triton in tests has no GPU.
    """
    root = Path(root)
    built = make_one_camera_checkpoint(root / "checkpoint")
    repository = root / "model_repository"
    result = export_checkpoint(
        built.path,
        repository,
        name,
        kind="gpu" if kind == "gpu" else "cpu",
        dataset_info=built.dataset_info,
    )
    return ExportedRepository(repository, name, built, result)


def clone_repository(source: Path, target: Path) -> Path:
    """A private copy of a model repository (hard links: cheap, and the exporter never
    rewrites a file in place, so the source cannot change through the copy)."""
    shutil.copytree(source, target, copy_function=os.link)
    return target


def snapshot_tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (or "<dir>") for everything under ``root``, hidden files too."""
    snap: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            snap[rel] = "<dir>"
        else:
            snap[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return snap


def run_export_cli(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python -m export ARGS`` in a real subprocess, as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", "export", *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
