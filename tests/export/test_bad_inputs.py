"""Every bad input: one clear line, non-zero exit, and the repository is unchanged.

All run the real CLI in a subprocess against a populated repository (a hard-linked clone
of the session's exported one) and compare the whole folder around it before and after.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from export.repository import StagedModel
from tests.support.exports import (
    REPO_ROOT,
    ExportedRepository,
    clone_repository,
    run_export_cli,
    snapshot_tree,
)


def _copy_checkpoint(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, copy_function=os.link)
    # config.json gets edited by some cases: give it its own inode.
    data = (source / "config.json").read_text()
    (target / "config.json").unlink()
    (target / "config.json").write_text(data)
    return target


def _set_type(ckpt: Path) -> None:
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["type"] = "diffusion"
    (ckpt / "config.json").write_text(json.dumps(cfg))


def _drop(name: str) -> Callable[[Path], None]:
    return lambda ckpt: (ckpt / name).unlink()


def _no_change(ckpt: Path) -> None:
    return None


def _remove_folder(ckpt: Path) -> None:
    shutil.rmtree(ckpt)


def _edit_config(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """A hand edit of config.json that LeRobot never writes."""
    def edit(ckpt: Path) -> None:
        cfg = json.loads((ckpt / "config.json").read_text())
        change(cfg)
        (ckpt / "config.json").write_text(json.dumps(cfg))
    return edit


def _lfs_pointer(ckpt: Path) -> None:
    """What a checkout without Git LFS leaves where the weights should be."""
    (ckpt / "model.safetensors").unlink()
    (ckpt / "model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1\n")


CASES: list[tuple[str, Callable[[Path], None], list[str], str]] = [
    ("lfs-pointer", _lfs_pointer, [], "is a Git LFS pointer, not the file"),
    ("state-without-shape", _edit_config(
        lambda c: c["input_features"]["observation.state"].pop("shape")),
     [], "malformed checkpoint config"),
    ("null-n-action-steps", _edit_config(lambda c: c.update(n_action_steps=None)),
     [], "malformed checkpoint config"),
    ("feature-as-a-string", _edit_config(
        lambda c: c["input_features"].update({"observation.state": "STATE"})),
     [], "malformed checkpoint config"),
    ("action-without-dims", _edit_config(
        lambda c: c["output_features"]["action"].update(shape=[])),
     [], "malformed checkpoint config"),
    ("missing-folder", _remove_folder, [], "checkpoint folder not found"),
    ("not-act", _set_type, [], "not an ACT checkpoint"),
    ("missing-config", _drop("config.json"), [], "config.json not found"),
    ("missing-weights", _drop("model.safetensors"), [], "missing weights"),
    (
        "missing-normalizer-stats",
        _drop("policy_preprocessor_step_3_normalizer_processor.safetensors"),
        [],
        "missing normalization stats",
    ),
    (
        "missing-unnormalizer-stats",
        _drop("policy_postprocessor_step_0_unnormalizer_processor.safetensors"),
        [],
        "missing normalization stats",
    ),
    ("missing-preprocessor", _drop("policy_preprocessor.json"), [], "missing normalization stats"),
    (
        "missing-postprocessor",
        _drop("policy_postprocessor.json"),
        [],
        "missing normalization stats",
    ),
    ("wrong-cameras", _no_change, ["--cameras", "left,right"], "does not match the checkpoint"),
    ("missing-camera", _no_change, ["--cameras", ""], "does not match the checkpoint"),
    ("existing-version", _no_change, ["--version", "1"], "version 1 of tiny_act already exists"),
    ("bad-joint-count", _no_change, ["--joint-names", "a,b,c"], "gives 3 state names"),
    ("bad-model-name", _no_change, ["--name", "../escape"], "invalid model name"),
    ("parity-failure", _no_change, ["--parity-tolerance", "1e-12"], "parity check failed"),
    ("unwritable-status-json", _no_change, ["--status-json", "/nonexistent/status.json"],
     "cannot write --status-json /nonexistent/status.json"),
    ("result-json-is-a-folder", _no_change, ["--result-json", "/tmp"],
     "--result-json /tmp is a folder"),
]


@pytest.mark.parametrize(
    ("breaks", "extra", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_fails_cleanly(
    exported_repository: ExportedRepository,
    tmp_path: Path,
    breaks: Callable[[Path], None],
    extra: list[str],
    message: str,
) -> None:
    area = tmp_path / "area"
    area.mkdir()
    repo = clone_repository(exported_repository.repository, area / "model_repository")
    ckpt = _copy_checkpoint(exported_repository.checkpoint.path, tmp_path / "ckpt")
    breaks(ckpt)
    before = snapshot_tree(area)
    args: list[str | Path] = ["--repository", repo, "--name", exported_repository.name, *extra]
    proc = run_export_cli(ckpt, *args)
    _assert_clean_failure(proc.returncode, proc.stderr, message)
    assert snapshot_tree(area) == before


def test_a_version_below_the_newest_is_refused(
    exported_repository: ExportedRepository, tmp_path: Path
) -> None:
    """The model's one config.pbtxt describes the newest version: exporting an older one
    would rewrite it from another checkpoint."""
    area = tmp_path / "area"
    area.mkdir()
    repo = clone_repository(exported_repository.repository, area / "model_repository")
    model = repo / exported_repository.name
    (model / "1").rename(model / "3")
    before = snapshot_tree(area)
    proc = run_export_cli(exported_repository.checkpoint.path, "--repository", repo,
                          "--name", exported_repository.name, "--version", "2")
    _assert_clean_failure(proc.returncode, proc.stderr, "older than its newest version 3")
    assert snapshot_tree(area) == before


def _assert_clean_failure(returncode: int, stderr: str, message: str) -> None:
    assert returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("export: error:")]
    assert len(errors) == 1, stderr
    assert message in errors[0]
    assert "Traceback" not in stderr


def test_repository_that_is_a_file(exported_repository: ExportedRepository, tmp_path: Path) -> None:
    target = tmp_path / "model_repository"
    target.write_text("not a folder")
    before = snapshot_tree(tmp_path)
    proc = run_export_cli(
        exported_repository.checkpoint.path, "--repository", target, "--name", "m"
    )
    _assert_clean_failure(proc.returncode, proc.stderr, "cannot write to repository")
    assert "is not a folder" in proc.stderr
    assert snapshot_tree(tmp_path) == before


def test_repository_under_a_file(exported_repository: ExportedRepository, tmp_path: Path) -> None:
    """A path nobody can create, even root (tests here may run as root, so no chmod)."""
    (tmp_path / "blocker").write_text("a file where a folder should be")
    before = snapshot_tree(tmp_path)
    proc = run_export_cli(
        exported_repository.checkpoint.path,
        "--repository",
        tmp_path / "blocker" / "model_repository",
        "--name",
        "m",
    )
    _assert_clean_failure(proc.returncode, proc.stderr, "cannot create repository")
    assert "blocker is not a folder" in proc.stderr
    assert snapshot_tree(tmp_path) == before


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """A folder nobody may write into: chmod for users; root ignores permissions, so for
    root the folder is made immutable (chattr +i), which binds root too."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    subprocess.run(["chattr", "+i", str(folder)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True, capture_output=True)


def test_read_only_repository(exported_repository: ExportedRepository, tmp_path: Path) -> None:
    repo = clone_repository(exported_repository.repository, tmp_path / "model_repository")
    before = snapshot_tree(tmp_path)
    with _read_only(repo):
        proc = run_export_cli(
            exported_repository.checkpoint.path, "--repository", repo, "--name", "other"
        )
    _assert_clean_failure(proc.returncode, proc.stderr, "cannot write to repository")
    assert snapshot_tree(tmp_path) == before


def test_dataset_info_with_wrong_joint_count(
    exported_repository: ExportedRepository, tmp_path: Path
) -> None:
    info = json.loads(exported_repository.checkpoint.dataset_info.read_text())
    info["features"]["action"]["names"] = ["only", "two"]
    bad = tmp_path / "info.json"
    bad.write_text(json.dumps(info))
    repo = clone_repository(exported_repository.repository, tmp_path / "model_repository")
    before = snapshot_tree(tmp_path)
    proc = run_export_cli(
        exported_repository.checkpoint.path,
        "--repository",
        repo,
        "--name",
        "m",
        "--dataset-info",
        bad,
    )
    _assert_clean_failure(proc.returncode, proc.stderr, "gives 2 action names")
    assert snapshot_tree(tmp_path) == before


def _export_stopped_at_parity(exported_repository: ExportedRepository, tmp_path: Path,
                              sig: signal.Signals) -> tuple[Path, Path, int, str]:
    """An export into a clone of the repository, sent ``sig`` during its parity check:
    (the folder around the repository, the result JSON, its exit code, its stderr)."""
    area = tmp_path / "area"
    area.mkdir()
    repo = clone_repository(exported_repository.repository, area / "model_repository")
    status, result = tmp_path / "status.json", tmp_path / "result.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "export", str(exported_repository.checkpoint.path),
         "--repository", str(repo), "--name", exported_repository.name,
         "--status-json", str(status), "--result-json", str(result)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (status.exists() and "parity" in status.read_text()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the export never reached its parity check"
            time.sleep(0.05)
        assert [p for p in area.iterdir() if "staging" in p.name]  # what must go
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return area, result, proc.returncode, stderr


def test_a_stopped_export_leaves_nothing_behind(
    exported_repository: ExportedRepository, tmp_path: Path
) -> None:
    """SIGTERM (``docker stop``, the export worker's timeout) killed the export where it
    was: its staging folder, the size of the model, stayed for good. It now goes as on
    Ctrl-C, and the result says the export was stopped."""
    before = snapshot_tree(clone_repository(exported_repository.repository,
                                            tmp_path / "expected" / "model_repository").parent)
    area, result, returncode, stderr = _export_stopped_at_parity(
        exported_repository, tmp_path, signal.SIGTERM)
    assert returncode == 143, stderr
    assert "stopped; the repository is unchanged" in stderr and "Traceback" not in stderr
    assert json.loads(result.read_text())["error"] == "stopped"
    assert snapshot_tree(area) == before


def test_what_a_killed_export_left_is_removed_by_the_next(
    exported_repository: ExportedRepository, tmp_path: Path
) -> None:
    """SIGKILL (the OOM killer, a kill -9) leaves the staging folder: nothing runs. The
    next export of this host removes it once its process is gone."""
    area, _, returncode, stderr = _export_stopped_at_parity(
        exported_repository, tmp_path, signal.SIGKILL)
    assert returncode == -signal.SIGKILL, stderr
    left = [p for p in area.iterdir() if "staging" in p.name]
    assert left, "nothing to remove: the test shows nothing"
    live = StagedModel(area / "model_repository", "other")  # another export starting here
    with live:
        assert [p for p in area.iterdir() if "staging" in p.name] == [live.root]
        again = StagedModel(area / "model_repository", "third")  # a live one's is kept
        with again:
            assert live.root.exists()
