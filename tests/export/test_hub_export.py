"""``python -m export org/name[@revision]`` on an offline hub cache (HF_HUB_OFFLINE=1).

The real CLI in a subprocess, with ``HF_HOME`` pointing at a cache laid out as
huggingface_hub leaves it (tests/support/hub.py); the real huggingface_hub resolves it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.exports.source import HubSource, default_model_name, source_matches
from orchestrator.triton.model_contract import contract_from_config, parse_config
from tests.support.exports import ExportedRepository, run_export_cli, snapshot_tree
from tests.support.hub import HubCheckpoint, add_repo, checkpoint_files, make_hub_checkpoint


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, exported_repository: ExportedRepository
) -> HubCheckpoint:
    home = tmp_path_factory.mktemp("hub") / "hf"
    made = make_hub_checkpoint(home, built=exported_repository.checkpoint)
    files = checkpoint_files(made.checkpoint.path)
    # An older commit (no ref names it) with plain-file snapshots instead of symlinks.
    add_repo(home, made.repo_id, files, refs=("v0",), symlinks=False, salt="older")
    add_repo(home, "tinyorg/diffusion", {**files, "config.json": _retyped(files)})
    add_repo(home, "tinyorg/readme", {"README.md": "# a model card, no policy"})
    # What resolving a repo online leaves behind: only the small files.
    add_repo(home, "tinyorg/partial", {"config.json": files["config.json"]})
    return made


def _retyped(files: dict[str, Any]) -> str:
    config = json.loads(Path(files["config.json"]).read_text())
    config["type"] = "diffusion"
    return json.dumps(config)


def _export(hub: HubCheckpoint, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_export_cli(*args, "--kind", "cpu", env=hub.env())


def _contract_info(repo: Path, name: str) -> tuple[Any, dict[str, str]]:
    contract = contract_from_config(parse_config((repo / name / "config.pbtxt").read_text()))
    return contract, dict(contract.info)


def test_hub_id_export_records_provenance_and_dataset_names(
    hub: HubCheckpoint, tmp_path: Path
) -> None:
    repo, result = tmp_path / "model_repository", tmp_path / "result.json"
    proc = _export(hub, hub.repo_id, "--repository", repo, "--result-json", result)
    assert proc.returncode == 0, proc.stderr
    name = default_model_name(HubSource(hub.repo_id, None))
    assert name == "tinyorg--tiny_act"
    assert (repo / name / "1" / "model.onnx").is_file()
    contract, info = _contract_info(repo, name)
    spec = hub.checkpoint.spec
    assert contract.state_names == tuple(spec.joint_names)
    assert contract.fps == spec.fps
    assert info["names_source"] == "dataset-info"
    assert info["source"] == f"hf:{hub.repo_id}@{hub.sha}"
    assert info["source_repo_id"] == hub.repo_id
    assert info["source_revision"] == hub.sha
    assert info["source_revision_requested"] == "main"
    assert info["model_sha256"] and info["onnx_sha256"]
    assert source_matches(info, HubSource(hub.repo_id, None))
    assert json.loads(result.read_text()) == {
        "ok": True,
        "model": name,
        "version": 1,
        "source": f"hf:{hub.repo_id}@{hub.sha}",
        "error": None,
    }


def test_revision_by_short_sha(hub: HubCheckpoint, tmp_path: Path) -> None:
    older = (hub.hf_home / "hub" / "models--tinyorg--tiny_act" / "refs" / "v0").read_text()
    assert older != hub.sha
    repo = tmp_path / "model_repository"
    proc = _export(hub, f"{hub.repo_id}@{older[:10]}", "--repository", repo, "--name", "pinned")
    assert proc.returncode == 0, proc.stderr
    _, info = _contract_info(repo, "pinned")
    assert info["source_revision"] == older
    assert info["source_revision_requested"] == older[:10]
    assert source_matches(info, HubSource(hub.repo_id, older))
    assert not source_matches(info, HubSource(hub.repo_id, None))


BAD = [
    ("unknown-repo", "nobody/nothing", "nobody/nothing is not in the offline hub cache"),
    ("unknown-revision", "tinyorg/tiny_act@v9", "revision 'v9' of hub repo tinyorg/tiny_act"),
    ("partly-cached", "tinyorg/partial", "only partly in the offline hub cache"),
    ("not-act", "tinyorg/diffusion", "not an ACT checkpoint"),
    ("not-a-checkpoint", "tinyorg/readme", "not a LeRobot policy checkpoint"),
    ("bad-id", "tinyorg/bad--id", "is not a hub repo id"),
    ("bare-word", "nowhere", "checkpoint folder not found: nowhere"),
]


@pytest.mark.parametrize(("source", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_hub_input_fails_cleanly(
    hub: HubCheckpoint, exported_repository: ExportedRepository, tmp_path: Path,
    source: str, message: str,
) -> None:
    area = tmp_path / "area"
    repo = area / "model_repository"
    repo.mkdir(parents=True)
    (repo / "keep.txt").write_text("the repository must stay as it was")
    before = snapshot_tree(area)
    result = tmp_path / "result.json"
    proc = _export(hub, source, "--repository", repo, "--result-json", result)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("export: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot_tree(area) == before
    written = json.loads(result.read_text())
    assert written["ok"] is False and written["version"] is None
    assert message in written["error"] and "\n" not in written["error"]


def test_folder_exports_record_their_folder(exported_repository: ExportedRepository) -> None:
    _, info = _contract_info(exported_repository.repository, exported_repository.name)
    folder = exported_repository.checkpoint.path
    assert info["source"] == f"dir:{folder}"
    assert info["source_path"] == str(folder)
    assert info["source_repo_id"] == ""


def test_missing_dataset_falls_back_with_a_note(
    hub: HubCheckpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process: the steps as reported, and the dataset the checkpoint names not cached."""
    from export.sources import export_source

    files = checkpoint_files(hub.checkpoint.path)
    files["train_config.json"] = json.dumps({"dataset": {"repo_id": "tinyorg/gone"}})
    sha = add_repo(hub.hf_home, "tinyorg/nodata", files)
    for key, value in hub.env().items():
        monkeypatch.setenv(key, value)
    steps: list[str] = []
    exported = export_source(
        "tinyorg/nodata", tmp_path / "repo", kind="cpu", on_step=steps.append
    )
    assert steps == ["fetching", "exporting", "checking parity", "writing"]
    assert exported.name == "tinyorg--nodata"
    assert exported.source == f"hf:tinyorg/nodata@{sha}"
    assert any("training dataset unavailable" in n and "tinyorg/gone" in n
               for n in exported.result.notes), exported.result.notes
    assert exported.result.contract.state_names[0] == "joint_0"
    assert exported.result.contract.info["names_source"] == "default"
