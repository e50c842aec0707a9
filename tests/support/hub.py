"""An offline Hugging Face hub cache, laid out as ``huggingface_hub`` leaves it.

``HF_HOME/hub/models--org--name/{blobs,refs,snapshots/<sha>}`` (and ``datasets--…`` for
dataset repos): snapshot files are relative symlinks into ``blobs`` (as on Linux) or plain
copies (as on file systems without symlinks); ``refs/<branch>`` holds the commit sha.
Tests point ``HF_HOME`` here and set ``HF_HUB_OFFLINE=1``: the real huggingface_hub then
resolves repos, revisions and files from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from export.synthetic import BuiltCheckpoint, make_one_camera_checkpoint

MODEL_REPO = "tinyorg/tiny_act"
DATASET_REPO = "tinyorg/tiny_data"

FileData = bytes | str | Path


@dataclass(frozen=True)
class HubCheckpoint:
    hf_home: Path
    repo_id: str
    sha: str  # the commit refs/main points to
    dataset_repo_id: str
    dataset_sha: str
    checkpoint: BuiltCheckpoint

    def env(self) -> dict[str, str]:
        """Environment for a process that must use this cache and nothing else."""
        return {
            "HF_HOME": str(self.hf_home),
            "HF_HUB_OFFLINE": "1",
            "HF_LEROBOT_HOME": str(self.hf_home / "lerobot"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }


def _bytes(data: FileData) -> bytes:
    if isinstance(data, Path):
        return data.read_bytes()
    return data.encode() if isinstance(data, str) else data


def add_repo(
    hf_home: Path,
    repo_id: str,
    files: Mapping[str, FileData],
    *,
    repo_type: str = "model",
    refs: tuple[str, ...] = ("main",),
    symlinks: bool = True,
    salt: str = "",
) -> str:
    """Add one commit of ``repo_id`` holding ``files`` (relative path -> content); returns
    its sha (deterministic: a hash of the contents and ``salt``), which each ref names."""
    contents = {path: _bytes(data) for path, data in sorted(files.items())}
    commit = hashlib.sha1(salt.encode())
    for path, data in contents.items():
        commit.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
    sha = commit.hexdigest()
    root = hf_home / "hub" / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = root / "snapshots" / sha
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    for path, data in contents.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        target = snapshot / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if symlinks:
            target.symlink_to(os.path.relpath(blob, target.parent))
        else:
            shutil.copyfile(blob, target)
    for ref in refs:
        ref_file = root / "refs" / ref
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        ref_file.write_text(sha)
    return sha


def checkpoint_files(folder: Path) -> dict[str, FileData]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def train_config(dataset_repo_id: str) -> str:
    """The part of LeRobot's ``train_config.json`` the exporter reads."""
    return json.dumps({"dataset": {"repo_id": dataset_repo_id}, "policy": {"type": "act"}})


def make_hub_checkpoint(
    hf_home: Path,
    *,
    repo_id: str = MODEL_REPO,
    dataset_repo_id: str = DATASET_REPO,
    symlinks: bool = True,
    built: BuiltCheckpoint | None = None,
) -> HubCheckpoint:
    """The tiny one-camera ACT as hub repo ``repo_id`` (refs/main), trained on dataset repo
    ``dataset_repo_id`` (holding ``meta/info.json`` with its joint names and fps)."""
    built = built or make_one_camera_checkpoint(hf_home.parent / f"{hf_home.name}-build")
    files = checkpoint_files(built.path)
    files["train_config.json"] = train_config(dataset_repo_id)
    sha = add_repo(hf_home, repo_id, files, symlinks=symlinks)
    dataset_sha = add_repo(
        hf_home,
        dataset_repo_id,
        {"meta/info.json": built.dataset_info},
        repo_type="dataset",
        symlinks=symlinks,
    )
    return HubCheckpoint(hf_home, repo_id, sha, dataset_repo_id, dataset_sha, built)
