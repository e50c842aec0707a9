"""Deriving the python-backend repository from an exported onnxruntime one (no server)."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest

from orchestrator.triton.local_repository import (
    PYTHON_MODEL_SOURCE,
    RepositoryError,
    RepositoryWatcher,
    copy_if_changed,
    python_backend_config,
    sync_repository,
)
from orchestrator.triton.model_contract import (
    build_model_config,
    contract_from_config,
    parse_config,
    render_config,
)
from tests.support.triton import tiny_contract, write_tiny_model


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_onnx_model_becomes_python_model_with_same_interface(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    contract = tiny_contract("m", cameras=("front", "wrist"))
    write_tiny_model(source, contract, max_batch_size=16, max_queue_delay_us=500)
    before = tree_digest(source)

    models = sync_repository(source, target)

    assert [(m.name, m.versions, m.converted) for m in models] == [("m", ("1",), True)]
    assert tree_digest(source) == before  # the source is never touched
    original = parse_config((source / "m" / "config.pbtxt").read_text())
    derived = parse_config((target / "m" / "config.pbtxt").read_text())
    assert original.backend == "onnxruntime" and derived.backend == "python"
    assert [g.kind for g in derived.instance_group] == [derived.instance_group[0].KIND_CPU]
    assert derived.max_batch_size == 16
    assert derived.dynamic_batching == original.dynamic_batching
    assert list(derived.input) == list(original.input)
    assert list(derived.output) == list(original.output)
    assert contract_from_config(derived) == contract_from_config(original)
    version = target / "m" / "1"
    assert (version / "model.onnx").read_bytes() == (source / "m" / "1" / "model.onnx").read_bytes()
    assert (version / "model.py").read_text() == PYTHON_MODEL_SOURCE.read_text()


def test_resync_adds_and_removes_versions_and_models(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    write_tiny_model(source, tiny_contract("a"), version=1)
    write_tiny_model(source, tiny_contract("b"), version=1)
    sync_repository(source, target)
    untouched = (target / "a" / "1" / "model.onnx").stat().st_ino

    write_tiny_model(source, tiny_contract("a"), version=2, seed=7)
    for path in sorted((source / "b").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (source / "b").rmdir()
    models = sync_repository(source, target)

    assert [(m.name, m.versions) for m in models] == [("a", ("1", "2"))]
    assert not (target / "b").exists()
    assert (target / "a" / "2" / "model.onnx").is_file()
    # Unchanged files stay the very same file: a running server keeps its mapping.
    assert (target / "a" / "1" / "model.onnx").stat().st_ino == untouched


def test_copy_if_changed_replaces_by_rename(tmp_path: Path) -> None:
    src, dst = tmp_path / "src.bin", tmp_path / "out" / "dst.bin"
    src.write_bytes(b"one")
    assert copy_if_changed(src, dst)
    inode = dst.stat().st_ino
    assert not copy_if_changed(src, dst)  # identical: nothing written
    assert dst.stat().st_ino == inode
    src.write_bytes(b"two")
    assert copy_if_changed(src, dst)
    assert dst.read_bytes() == b"two"
    assert dst.stat().st_ino != inode  # a new file renamed over, never written in place
    assert sorted(p.name for p in dst.parent.iterdir()) == ["dst.bin"]  # no temp left


def test_gpu_settings_become_cpu(tmp_path: Path) -> None:
    config = build_model_config(tiny_contract("g"), instances=2, kind="gpu")
    config.instance_group[0].gpus.extend([0])
    config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    derived = python_backend_config(config)
    assert derived.instance_group[0].count == 2
    assert derived.instance_group[0].kind == derived.instance_group[0].KIND_CPU
    assert list(derived.instance_group[0].gpus) == []
    assert not derived.HasField("optimization")


def test_other_backends_are_skipped_and_bad_configs_rejected(tmp_path: Path) -> None:
    source = tmp_path / "src"
    write_tiny_model(source, tiny_contract("ok"))
    trt = build_model_config(tiny_contract("trt"), backend="tensorrt")
    (source / "trt" / "1").mkdir(parents=True)
    (source / "trt" / "config.pbtxt").write_text(render_config(trt))
    assert [m.name for m in sync_repository(source, tmp_path / "dst")] == ["ok"]

    (source / "bad").mkdir()
    (source / "bad" / "config.pbtxt").write_text("this is { not a config")
    with pytest.raises(RepositoryError, match="bad"):
        sync_repository(source, tmp_path / "dst2")
    with pytest.raises(RepositoryError, match="does not exist"):
        sync_repository(tmp_path / "missing", tmp_path / "dst3")


def test_model_without_onnx_file_is_rejected(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "empty" / "1").mkdir(parents=True)
    config = build_model_config(tiny_contract("empty"))
    (source / "empty" / "config.pbtxt").write_text(render_config(config))
    with pytest.raises(RepositoryError, match=r"model\.onnx"):
        sync_repository(source, tmp_path / "dst")


def test_a_half_written_config_changes_nothing(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    write_tiny_model(source, tiny_contract("m"))
    sync_repository(source, target)
    before = tree_digest(target)
    (source / "m" / "config.pbtxt").write_text("")  # truncated, as mid-write
    with pytest.raises(RepositoryError, match="no backend"):
        sync_repository(source, target)
    assert tree_digest(target) == before


def test_watcher_syncs_a_new_version_and_retries_after_a_failure(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    write_tiny_model(source, tiny_contract("m"))
    sync_repository(source, target)
    watcher = RepositoryWatcher(source, lambda: sync_repository(source, target), 0.02)
    watcher.start()
    try:
        config = (source / "m" / "config.pbtxt").read_text()
        (source / "m" / "config.pbtxt").write_text("")
        shutil.copytree(source / "m" / "1", source / "m" / "2")
        time.sleep(0.2)  # the watcher fails on the empty config meanwhile, and keeps going
        assert not (target / "m" / "2").exists()
        (source / "m" / "config.pbtxt").write_text(config)
        for _ in range(500):
            if (target / "m" / "2" / "model.onnx").is_file():
                break
            time.sleep(0.02)
    finally:
        watcher.stop()
    assert (target / "m" / "2" / "model.onnx").read_bytes() == (
        source / "m" / "2" / "model.onnx"
    ).read_bytes()
