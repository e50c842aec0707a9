"""How an export's staged version lands in a model repository (export/repository.py),
without running an export: the staged files are written by hand."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from export.errors import ExportError
from export.repository import CONFIG_NAME, ONNX_NAME, StagedModel, choose_version


def _add_version(model: Path, version: int) -> None:
    """Version ``version`` as an export writes it (here by hand: another export's, too)."""
    (model / str(version)).mkdir(parents=True)
    (model / str(version) / ONNX_NAME).write_bytes(b"v%d" % version)


def _model(repository: Path, versions: list[int]) -> Path:
    model = repository / "m"
    for version in versions:
        _add_version(model, version)
    (model / CONFIG_NAME).write_text("config of the newest\n")
    return model


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def test_a_commit_adds_the_version_and_swaps_the_config(tmp_path: Path) -> None:
    model = _model(tmp_path / "repo", [1])
    with StagedModel(tmp_path / "repo", "m") as staged:
        version = choose_version(model, None)
        staged.onnx_path.write_bytes(b"v2")
        staged.commit("config of 2\n", version)
    assert (model / CONFIG_NAME).read_text() == "config of 2\n"
    assert (model / "2" / ONNX_NAME).read_bytes() == b"v2"
    assert _files(model) == {"1", f"1/{ONNX_NAME}", "2", f"2/{ONNX_NAME}", CONFIG_NAME}


def test_a_newer_version_added_meanwhile_refuses_the_commit(tmp_path: Path) -> None:
    """Two exports into one model: the one that chose first but commits last must not
    put its config over the newer version's."""
    model = _model(tmp_path / "repo", [1])
    with StagedModel(tmp_path / "repo", "m") as staged:
        version = choose_version(model, None)
        staged.onnx_path.write_bytes(b"slow")
        _add_version(model, 3)  # the other export, done meanwhile
        before = {p: p.read_bytes() for p in model.rglob("*") if p.is_file()}
        with pytest.raises(ExportError, match="older than its newest version 3"):
            staged.commit("config of the slow one\n", version)
    assert {p: p.read_bytes() for p in model.rglob("*") if p.is_file()} == before
    assert not (model / str(version)).exists()


def test_a_repository_that_is_a_mount_point_gets_its_model(tmp_path: Path) -> None:
    """A repository mounted into a container (docker-compose's ./model_repository:/models)
    or from a Kubernetes volume has a parent on another filesystem, where nothing can be
    renamed in from: every export failed there. /dev/shm stands in for one: a mount point
    on every Linux machine."""
    repository = Path("/dev/shm")
    assert repository.stat().st_dev != repository.parent.stat().st_dev, "not a mount point"
    name = f"export-test-{uuid.uuid4().hex[:8]}"
    model = repository / name
    try:
        for version in (1, 2):
            with StagedModel(repository, name) as staged:
                assert not staged.root.is_relative_to(repository.parent)  # not in /dev
                staged.onnx_path.write_bytes(b"v%d" % version)
                staged.commit(f"config of {version}\n", choose_version(model, None))
            assert not staged.root.exists()
        assert (model / CONFIG_NAME).read_text() == "config of 2\n"
        assert [(model / str(v) / ONNX_NAME).read_bytes() for v in (1, 2)] == [b"v1", b"v2"]
        assert not list(repository.glob(".export-incoming-*"))
    finally:
        shutil.rmtree(model, ignore_errors=True)


def test_a_version_chosen_for_the_export_and_taken_meanwhile_is_chosen_again(
    tmp_path: Path,
) -> None:
    """Two exports of one model, neither asking for a version: the one committing last
    failed after all its work ("version 2 already exists ... omit --version", which it had
    omitted). It takes the next version."""
    model = _model(tmp_path / "repo", [1])
    with StagedModel(tmp_path / "repo", "m") as staged:
        version = choose_version(model, None)
        staged.onnx_path.write_bytes(b"late")
        _add_version(model, 2)  # the other export, done meanwhile
        landed = staged.commit("config of the late one\n", version, auto=True)
    assert landed == model / "3"
    assert (model / "3" / ONNX_NAME).read_bytes() == b"late"
    assert (model / "2" / ONNX_NAME).read_bytes() == b"v2"
    assert (model / CONFIG_NAME).read_text() == "config of the late one\n"


def test_a_model_folder_linked_to_another_filesystem_gets_its_version(tmp_path: Path) -> None:
    """A model folder that is a link (or mount) onto another filesystem: the copy went to
    the repository's filesystem, and its rename into the model failed the same way."""
    elsewhere = Path("/dev/shm") / f"export-test-{uuid.uuid4().hex[:8]}"
    assert Path("/dev/shm").stat().st_dev != tmp_path.stat().st_dev, "same filesystem"
    try:
        (elsewhere / "1").mkdir(parents=True)
        (elsewhere / "1" / ONNX_NAME).write_bytes(b"v1")
        (elsewhere / CONFIG_NAME).write_text("config of 1\n")
        (tmp_path / "repo").mkdir()
        (tmp_path / "repo" / "m").symlink_to(elsewhere)
        with StagedModel(tmp_path / "repo", "m") as staged:
            staged.onnx_path.write_bytes(b"v2")
            staged.commit("config of 2\n", choose_version(tmp_path / "repo" / "m", None))
        assert (elsewhere / "2" / ONNX_NAME).read_bytes() == b"v2"
        assert (elsewhere / CONFIG_NAME).read_text() == "config of 2\n"
        assert _files(elsewhere) == {"1", f"1/{ONNX_NAME}", "2", f"2/{ONNX_NAME}", CONFIG_NAME}
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)
