"""Export from where users have a policy: a hub repo id (``org/name[@revision]``) or a folder.

A hub checkpoint is fetched through huggingface_hub (cache, ``HF_HUB_OFFLINE`` and
``HF_TOKEN`` honoured); its small ``config.json`` is checked first, so a repo that is not an
ACT checkpoint fails before the weights are downloaded. Joint names and fps come from the
training dataset named in ``train_config.json`` when the user gives neither
``--dataset-info`` nor ``--joint-names``. Every export records where it came from
(``orchestrator.exports.source`` keys) so the orchestrator can find it again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.exports.resolve import (
    DATASET_INFO_FILE,
    TRAIN_CONFIG_FILE,
    WEIGHTS_FILE,
    HubOptions,
    SourceError,
    dataset_repo_id,
    fetch_hub,
    resolve_hub,
)
from orchestrator.exports.source import (
    FolderSource,
    HubSource,
    default_model_name,
    parse_source,
    provenance_metadata,
)

from .api import ExportResult, export_checkpoint
from .errors import ExportError

logger = logging.getLogger(__name__)

Step = Callable[[str], None]


@dataclass(frozen=True)
class SourceExport:
    result: ExportResult
    name: str
    source: str  # canonical: hf:org/name@<sha> or dir:/abs/path


def parse_export_source(text: str | Path) -> HubSource | FolderSource:
    """What ``python -m export SOURCE`` accepts; a bare word is a (missing) folder."""
    value = str(text)
    try:
        parsed = parse_source(value)
    except ValueError as exc:
        raise ExportError(str(exc)) from exc
    if parsed is None:
        raise ExportError(
            f"checkpoint folder not found: {value} (nor is it a hub repo id org/name[@revision])"
        )
    return parsed


def _lerobot_home(env: Mapping[str, str]) -> Path:
    if env.get("HF_LEROBOT_HOME"):
        return Path(env["HF_LEROBOT_HOME"]).expanduser()
    hf_home = env.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home).expanduser() / "lerobot"


def find_dataset_info(
    repo_id: str, options: HubOptions | None = None
) -> tuple[Path | None, str | None]:
    """(the dataset's ``meta/info.json``, None) or (None, a note saying why not).

    A dataset LeRobot already downloaded (``HF_LEROBOT_HOME/<repo_id>``) is used as is;
    otherwise only ``meta/info.json`` is fetched from the hub's dataset repo.
    """
    local = _lerobot_home(os.environ) / repo_id / DATASET_INFO_FILE
    if local.is_file():
        return local, None
    try:
        snapshot = fetch_hub(
            repo_id, None, repo_type="dataset", allow_patterns=[DATASET_INFO_FILE], options=options
        )
    except SourceError as exc:
        return None, f"joint names and fps: training dataset unavailable ({exc})"
    path = snapshot / DATASET_INFO_FILE
    if not path.is_file():
        return None, f"joint names and fps: dataset {repo_id} has no {DATASET_INFO_FILE}"
    return path, None


def export_source(
    source: str | Path,
    repository: str | Path,
    name: str | None = None,
    *,
    dataset_info: str | Path | None = None,
    joint_names: Sequence[str] | None = None,
    extra_info: Mapping[str, str] | None = None,
    on_step: Step | None = None,
    hub_options: HubOptions | None = None,
    **export_kwargs: Any,
) -> SourceExport:
    """Fetch (hub) and export ``source`` as a new version of ``name`` (default: derived
    from the source). Steps reported: fetching, exporting, checking parity, writing.

    Raises ExportError (one line) on bad input; the repository is then unchanged.
    """
    step = on_step or (lambda _: None)
    step("fetching")
    parsed = parse_export_source(source)
    model_name = name or default_model_name(parsed)
    notes: list[str] = []
    if isinstance(parsed, HubSource):
        try:
            resolved = resolve_hub(parsed, options=hub_options)
            logger.info("fetching %s (%s)", resolved.canonical, parsed.requested_revision)
            folder = fetch_hub(
                parsed.repo_id, resolved.revision or parsed.revision, options=hub_options
            )
        except SourceError as exc:
            raise ExportError(str(exc)) from exc
        options = hub_options or HubOptions.from_env()
        if options.offline and not (folder / WEIGHTS_FILE).is_file():
            # resolve_hub (or an earlier look) may have cached only the small files.
            raise ExportError(
                f"hub repo {resolved.canonical.removeprefix('hf:')} is only partly in the "
                f"offline hub cache {options.cache_dir} (no {WEIGHTS_FILE}; HF_HUB_OFFLINE=1)"
            )
        provenance = resolved.metadata()
        dataset_repo = resolved.dataset_repo_id
    else:
        folder = parsed.path
        provenance = provenance_metadata(parsed)
        base = folder / "pretrained_model" if (folder / "pretrained_model").is_dir() else folder
        dataset_repo = dataset_repo_id(base / TRAIN_CONFIG_FILE)
    if dataset_info is None and joint_names is None and dataset_repo:
        dataset_info, note = find_dataset_info(dataset_repo, hub_options)
        if dataset_info is not None:
            logger.info("joint names and fps from dataset %s: %s", dataset_repo, dataset_info)
        if note:
            notes.append(note)
            logger.warning("%s", note)
    step("exporting")
    result = export_checkpoint(
        folder,
        repository,
        model_name,
        dataset_info=dataset_info,
        joint_names=joint_names,
        extra_info={**provenance, **(extra_info or {})},
        on_step=step,
        **export_kwargs,
    )
    if notes:
        result = dataclasses.replace(result, notes=(*notes, *result.notes))
    return SourceExport(result=result, name=model_name, source=provenance["source"])
