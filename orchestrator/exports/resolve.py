"""Check a hub repo or checkpoint folder before anything is created, and fetch hub files.

Torch-free: only ``huggingface_hub`` and small JSON files. The hub settings (``HF_HOME``,
``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``, ``HF_ENDPOINT``) are read from the
environment at each call, not when huggingface_hub is imported, so a process (or a test)
that sets them later is honoured. Every bad input raises :class:`SourceError` with a
one-line message. Blocking: call through ``asyncio.to_thread`` from async code.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .source import (
    DEFAULT_REVISION,
    FolderSource,
    HubSource,
    canonical_source,
    provenance_metadata,
)

CONFIG_FILE = "config.json"
TRAIN_CONFIG_FILE = "train_config.json"
WEIGHTS_FILE = "model.safetensors"
DATASET_INFO_FILE = "meta/info.json"
IMAGE_PREFIX = "observation.images."
SUPPORTED_POLICY = "act"
_TRUE = {"1", "on", "yes", "true"}
_FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
_SHA_PREFIX = re.compile(r"^[0-9a-f]{7,39}$")
RepoType = Literal["model", "dataset"]


class SourceError(Exception):
    """A policy source that cannot be used; the message is one line, shown as is."""


class HubUnreachable(SourceError):
    """The hub (or its mirror) did not answer: the source may be fine, try again later."""


@dataclass(frozen=True)
class HubOptions:
    cache_dir: Path
    offline: bool
    token: str | None
    endpoint: str | None = None  # HF_ENDPOINT: a hub mirror

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HubOptions:
        env = os.environ if env is None else env
        if env.get("HF_HUB_CACHE"):
            cache = Path(env["HF_HUB_CACHE"])
        elif env.get("HF_HOME"):
            cache = Path(env["HF_HOME"]) / "hub"
        else:
            xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
            cache = Path(xdg) / "huggingface" / "hub"
        offline = env.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE
        return cls(
            cache_dir=cache.expanduser(),
            offline=offline,
            token=env.get("HF_TOKEN") or None,
            endpoint=env.get("HF_ENDPOINT") or None,
        )


@dataclass(frozen=True)
class ResolvedCheckpoint:
    source: HubSource | FolderSource
    revision: str | None  # resolved commit sha (hub); None for a folder
    policy_type: str
    cameras: tuple[str, ...]  # from config.json input_features observation.images.<cam>
    dataset_repo_id: str | None  # train_config.json dataset.repo_id, when there is one
    path: Path  # the folder holding config.json (hub: its snapshot folder)

    @property
    def canonical(self) -> str:
        return canonical_source(self.source, self.revision)

    def metadata(self) -> dict[str, str]:
        return provenance_metadata(self.source, self.revision)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def _repo_folder(options: HubOptions, repo_id: str, repo_type: RepoType) -> Path:
    return options.cache_dir / f"{repo_type}s--{repo_id.replace('/', '--')}"


def _cached_revisions(folder: Path) -> list[str]:
    refs = folder / "refs"
    names = sorted(p.relative_to(refs).as_posix() for p in refs.rglob("*") if p.is_file())
    shas = sorted(p.name[:12] for p in (folder / "snapshots").glob("*") if p.is_dir())
    return names + shas


def _offline_revision(folder: Path, revision: str) -> str:
    """A short sha names the one cached snapshot it starts (huggingface_hub only knows full
    shas and refs offline)."""
    if not _SHA_PREFIX.match(revision) or (folder / "refs" / revision).is_file():
        return revision
    hits = [p.name for p in (folder / "snapshots").glob(f"{revision}*") if p.is_dir()]
    return hits[0] if len(hits) == 1 else revision


def _missing_offline(
    options: HubOptions, label: str, what: str, revision: str, folder: Path
) -> str:
    if not folder.is_dir():
        return (
            f"{what} {label} is not in the offline hub cache {options.cache_dir} "
            "(HF_HUB_OFFLINE=1): download it first or unset HF_HUB_OFFLINE"
        )
    cached = ", ".join(_cached_revisions(folder)) or "none"
    return (
        f"revision {revision!r} of {what} {label} is not in the offline hub cache "
        f"{options.cache_dir} (HF_HUB_OFFLINE=1; cached: {cached})"
    )


def fetch_hub(
    repo_id: str,
    revision: str | None,
    *,
    repo_type: RepoType = "model",
    allow_patterns: Sequence[str] | None = None,
    options: HubOptions | None = None,
) -> Path:
    """``snapshot_download`` with one-line errors; returns the snapshot folder, whose name is
    the resolved commit sha. ``allow_patterns`` limits what is downloaded."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    options = options or HubOptions.from_env()
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; its HTTP layer refuses every
    # request while the flag is set, so keep it in step with the settings of this call.
    constants.HF_HUB_OFFLINE = options.offline
    wanted = revision or DEFAULT_REVISION
    what = "dataset" if repo_type == "dataset" else "hub repo"
    folder = _repo_folder(options, repo_id, repo_type)
    if options.offline:
        wanted = _offline_revision(folder, wanted)
    try:
        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=wanted,
            cache_dir=options.cache_dir,
            local_files_only=options.offline,
            token=options.token,
            endpoint=options.endpoint,
            allow_patterns=list(allow_patterns) if allow_patterns is not None else None,
        )
    except GatedRepoError as exc:
        raise SourceError(
            f"{what} {repo_id} is gated: accept its terms on the hub and set HF_TOKEN"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise SourceError(f"{what} {repo_id} not found on the hub (private? set HF_TOKEN)") from exc
    except RevisionNotFoundError as exc:
        raise SourceError(f"revision {wanted!r} does not exist in {what} {repo_id}") from exc
    except LocalEntryNotFoundError as exc:
        if options.offline:
            raise SourceError(_missing_offline(options, repo_id, what, wanted, folder)) from exc
        raise HubUnreachable(
            f"cannot reach the hub for {what} {repo_id}@{wanted} and it is not cached: "
            f"{_one_line(exc)}"
        ) from exc
    except HFValidationError as exc:
        raise SourceError(f"{what} {repo_id!r}: {_one_line(exc)}") from exc
    except OSError as exc:  # every other hub error (HTTP, connection, disk) is an OSError
        raise HubUnreachable(f"cannot fetch {what} {repo_id}@{wanted}: {_one_line(exc)}"
                             ) from exc
    return Path(path)


def _read_json(path: Path, label: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SourceError(f"cannot read {label}: {_one_line(exc)}") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{label} is not a JSON object")
    return data


def dataset_repo_id(train_config: Path) -> str | None:
    """``dataset.repo_id`` of a LeRobot ``train_config.json`` (None when absent/unreadable)."""
    try:
        data = json.loads(train_config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    dataset = data.get("dataset") if isinstance(data, dict) else None
    repo_id = dataset.get("repo_id") if isinstance(dataset, dict) else None
    # LeRobot accepts a list of datasets; the first one names the features.
    if isinstance(repo_id, list) and repo_id:
        repo_id = repo_id[0]
    return repo_id if isinstance(repo_id, str) and repo_id.strip() else None


def _describe(
    folder: Path, label: str, source: HubSource | FolderSource, sha: str | None
) -> ResolvedCheckpoint:
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise SourceError(f"{label} is not a LeRobot policy checkpoint: it has no {CONFIG_FILE}")
    config = _read_json(config_path, f"{label} {CONFIG_FILE}")
    policy_type = config.get("type")
    if policy_type != SUPPORTED_POLICY:
        raise SourceError(
            f"{label} is not an ACT checkpoint: {CONFIG_FILE} has type {policy_type!r}; "
            f"this server exports and serves only {SUPPORTED_POLICY!r} policies"
        )
    inputs = config.get("input_features")
    if not isinstance(inputs, dict):
        raise SourceError(f"{label} {CONFIG_FILE} has no input_features: not a trained policy")
    cameras = tuple(k.removeprefix(IMAGE_PREFIX) for k in inputs if k.startswith(IMAGE_PREFIX))
    if not cameras:
        raise SourceError(f"{label} has no camera input ({IMAGE_PREFIX}<camera>)")
    return ResolvedCheckpoint(
        source=source,
        revision=sha,
        policy_type=policy_type,
        cameras=cameras,
        dataset_repo_id=dataset_repo_id(folder / TRAIN_CONFIG_FILE),
        path=folder,
    )


def resolve_hub(source: HubSource, *, options: HubOptions | None = None) -> ResolvedCheckpoint:
    """Fetch only ``config.json`` and ``train_config.json`` (a few kB) and check them."""
    snapshot = fetch_hub(
        source.repo_id,
        source.revision,
        allow_patterns=[CONFIG_FILE, TRAIN_CONFIG_FILE],
        options=options,
    )
    sha = snapshot.name if _FULL_SHA.match(snapshot.name) else None
    label = f"hub repo {source.repo_id}@{(sha or source.requested_revision)[:12]}"
    return _describe(snapshot, label, source, sha)


def policy_folder(folder: Path) -> Path:
    """The folder that holds the saved policy: ``folder`` itself, or its
    ``pretrained_model`` when ``folder`` is a training checkpoint (``checkpoints/last``)."""
    if not folder.exists():
        raise SourceError(f"checkpoint folder not found: {folder}")
    if not folder.is_dir():
        raise SourceError(f"checkpoint path is not a folder: {folder}")
    if (
        not (folder / CONFIG_FILE).is_file()
        and (folder / "pretrained_model" / CONFIG_FILE).is_file()
    ):
        return folder / "pretrained_model"
    return folder


def resolve_folder(source: FolderSource) -> ResolvedCheckpoint:
    folder = policy_folder(source.path)
    resolved = _describe(folder, f"folder {folder}", source, None)
    if not (folder / WEIGHTS_FILE).is_file():
        raise SourceError(f"folder {folder} has no {WEIGHTS_FILE}: not a saved policy")
    return resolved


def resolve_source(
    source: HubSource | FolderSource, *, options: HubOptions | None = None
) -> ResolvedCheckpoint:
    if isinstance(source, HubSource):
        return resolve_hub(source, options=options)
    return resolve_folder(source)
