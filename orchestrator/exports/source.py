"""Where a policy comes from: a served model name, a hub repo id or a checkpoint folder.

Pure code (no torch, no network): both the exporter and the orchestrator use it, so the
metadata the exporter writes and the orchestrator's lookup agree by construction. The only
file-system access is the optional ``is_dir`` probe of :func:`parse_source`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REVISION = "main"

# Metadata keys the exporter writes into the model's config.pbtxt parameters.
SOURCE_KEY = "source"  # "hf:org/name@<sha>" or "dir:/abs/path"
SOURCE_REPO_ID_KEY = "source_repo_id"
SOURCE_REVISION_KEY = "source_revision"  # resolved commit sha
SOURCE_REVISION_REQUESTED_KEY = "source_revision_requested"  # as asked, "main" if none
SOURCE_PATH_KEY = "source_path"  # absolute folder (folder exports only)
SOURCE_KEYS = (
    SOURCE_KEY,
    SOURCE_REPO_ID_KEY,
    SOURCE_REVISION_KEY,
    SOURCE_REVISION_REQUESTED_KEY,
    SOURCE_PATH_KEY,
)

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SERVED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(:[0-9]+)?$")
# huggingface_hub's rules: word characters, '-' and '.', not starting/ending with '-'/'.',
# no '--' or '..' anywhere, at most 96 characters in all.
_HUB_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"^{_HUB_PART}/{_HUB_PART}$")
_REVISION = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]{0,254}$")
_SHA_PREFIX = re.compile(r"^[0-9a-f]{7,40}$")
_MAX_HUB_ID = 96
_FOLDER_PREFIXES = ("/", "./", "../", "~")
_HUB_PREFIX = "hf:"
_DIR_PREFIX = "dir:"
# LeRobot's layout: outputs/train/<run>/checkpoints/<step|last>/pretrained_model.
_GENERIC_PARTS = {"pretrained_model", "checkpoints", "checkpoint", "last", "model"}


@dataclass(frozen=True)
class HubSource:
    repo_id: str
    revision: str | None  # None = the default branch, "main"

    @property
    def requested_revision(self) -> str:
        return self.revision or DEFAULT_REVISION

    def __str__(self) -> str:
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id


@dataclass(frozen=True)
class FolderSource:
    path: Path  # absolute

    def __str__(self) -> str:
        return str(self.path)


Source = HubSource | FolderSource


def is_hub_repo_id(text: str) -> bool:
    return (
        len(text) <= _MAX_HUB_ID
        and _HUB_ID.match(text) is not None
        and "--" not in text
        and ".." not in text
    )


def _folder(text: str) -> FolderSource:
    return FolderSource(Path(os.path.abspath(os.path.expanduser(text))))


def _hub(text: str, original: str) -> HubSource:
    repo_id, at, revision = text.partition("@")
    if not is_hub_repo_id(repo_id):
        raise ValueError(
            f"{original!r} is not a hub repo id: expected org/name (letters, digits, '-', '_', "
            "'.'; no '--' or '..'; at most 96 characters), optionally @revision"
        )
    if at and (not _REVISION.match(revision) or ".." in revision or revision.endswith("/")):
        raise ValueError(f"{original!r}: revision {revision!r} is not a branch, tag or commit sha")
    return HubSource(
        repo_id=repo_id, revision=None if revision in ("", DEFAULT_REVISION) else revision
    )


def parse_source(
    text: str, *, is_dir: Callable[[str], bool] = os.path.isdir
) -> HubSource | FolderSource | None:
    """Classify a ``policy_path`` / export source.

    None: a served model name (``NAME`` or ``NAME:VERSION``). A folder: starts with ``/``,
    ``./``, ``../``, ``~`` (or ``dir:``), or names an existing directory (checked first, so
    a local ``org/name`` folder wins over the hub). A hub repo: ``org/name[@revision]``
    (or ``hf:org/name[@revision]``); ``@main`` is the default branch (revision None).
    Anything else raises ValueError with the accepted forms.
    """
    value = text.strip()
    if not value:
        raise ValueError(
            "empty policy source: expected NAME[:VERSION], org/name[@revision] or a folder"
        )
    if value.startswith(_DIR_PREFIX):
        return _folder(value[len(_DIR_PREFIX) :])
    if value.startswith(_HUB_PREFIX):
        return _hub(value[len(_HUB_PREFIX) :], text)
    if value.startswith(_FOLDER_PREFIXES) or is_dir(value):
        return _folder(value)
    if _SERVED.match(value):
        return None
    if "/" in value:
        return _hub(value, text)
    raise ValueError(
        f"{text!r} is neither a served model (NAME or NAME:VERSION, VERSION a positive "
        "integer), a hub repo id (org/name[@revision]) nor a folder (/abs, ./rel, ~/...)"
    )


def _short_hash(text: str) -> str:
    # surrogatepass: a path may hold lone surrogates (undecodable bytes, os.fsdecode).
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _clean(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def _fit(name: str, key: str) -> str:
    """A valid Triton name: starts alphanumeric, at most 128 characters."""
    if not name[:1].isascii() or not name[:1].isalnum():
        name = "m-" + name
    if len(name) > 128:
        name = f"{name[:119]}-{_short_hash(key)}"
    return name


def default_model_name(source: HubSource | FolderSource) -> str:
    """Deterministic model name for a source.

    Hub: ``org--name`` (a hub id never holds ``--``, so this is one-to-one), plus
    ``--<revision>`` when one other than main is asked for (characters a model name cannot
    hold become ``_`` and a hash of the revision keeps it unique). Folder: the run's folder
    name (skipping LeRobot's ``checkpoints/last/pretrained_model`` parts) and a hash of the
    absolute path.
    """
    if isinstance(source, HubSource):
        org, _, name = source.repo_id.partition("/")
        base = f"{org}--{name}"
        if source.revision:
            rev = _clean(source.revision)
            if rev != source.revision:
                rev = f"{rev}-{_short_hash(source.revision)}"
            base = f"{base}--{rev}"
        return _fit(base, str(source))
    parts = [p for p in source.path.parts if p not in ("/", "")]
    label = next(
        (p for p in reversed(parts) if p not in _GENERIC_PARTS and not p.isdigit()),
        parts[-1] if parts else "checkpoint",
    )
    label = _clean(label).strip("._-") or "checkpoint"
    return _fit(f"{label[:100]}-{_short_hash(str(source.path))}", str(source.path))


def canonical_source(source: HubSource | FolderSource, resolved_revision: str | None = None) -> str:
    """``hf:org/name@<sha>`` (or the requested revision when unresolved) or ``dir:/abs``."""
    if isinstance(source, HubSource):
        return f"{_HUB_PREFIX}{source.repo_id}@{resolved_revision or source.requested_revision}"
    return f"{_DIR_PREFIX}{source.path}"


def provenance_metadata(
    source: HubSource | FolderSource, resolved_revision: str | None = None
) -> dict[str, str]:
    """The metadata entries an export records; every key is present (empty when n/a)."""
    if isinstance(source, HubSource):
        return {
            SOURCE_KEY: canonical_source(source, resolved_revision),
            SOURCE_REPO_ID_KEY: source.repo_id,
            SOURCE_REVISION_KEY: resolved_revision or "",
            SOURCE_REVISION_REQUESTED_KEY: source.requested_revision,
            SOURCE_PATH_KEY: "",
        }
    return {
        SOURCE_KEY: canonical_source(source),
        SOURCE_REPO_ID_KEY: "",
        SOURCE_REVISION_KEY: "",
        SOURCE_REVISION_REQUESTED_KEY: "",
        SOURCE_PATH_KEY: str(source.path),
    }


def source_matches(info: Mapping[str, str], source: HubSource | FolderSource) -> bool:
    """Whether a served model's metadata says it was exported from ``source``.

    Hub: same repo id (the hub treats ids case-insensitively) and either the same requested
    revision, or a resolved sha equal to the revision asked for or starting with it (at
    least 7 hex digits). Folder: the same absolute path.
    """
    if isinstance(source, FolderSource):
        path = info.get(SOURCE_PATH_KEY, "")
        return bool(path) and os.path.normpath(path) == os.path.normpath(str(source.path))
    repo_id = info.get(SOURCE_REPO_ID_KEY, "")
    if not repo_id or repo_id.casefold() != source.repo_id.casefold():
        return False
    if info.get(SOURCE_REVISION_REQUESTED_KEY, "") == source.requested_revision:
        return True
    resolved = info.get(SOURCE_REVISION_KEY, "").lower()
    wanted = (source.revision or "").lower()
    return bool(resolved) and _SHA_PREFIX.match(wanted) is not None and resolved.startswith(wanted)


def matching_models(
    models: Mapping[str, Mapping[str, str]], source: HubSource | FolderSource
) -> list[str]:
    """Names of the served models (name -> metadata) exported from ``source``; the default
    name first when it is among them, then by name, so every caller picks the same one."""
    hits = sorted(name for name, info in models.items() if source_matches(info, source))
    default = default_model_name(source)
    return sorted(hits, key=lambda name: name != default)
