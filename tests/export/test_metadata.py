"""Joint names and fps resolution (pure functions, no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export import ExportError
from export.metadata import DEFAULT_FPS, resolve_metadata

JOINTS = ["a.pos", "b.pos", "c.pos"]


def _info(folder: Path, names: object = JOINTS, fps: object = 25) -> Path:
    meta = folder / "meta"
    meta.mkdir(parents=True)
    feats = {"observation.state": {"names": names}, "action": {"names": names}}
    (meta / "info.json").write_text(json.dumps({"fps": fps, "features": feats}))
    return meta / "info.json"


def test_dataset_info_file_or_dataset_folder(tmp_path: Path) -> None:
    path = _info(tmp_path)
    for given in (path, tmp_path):
        meta = resolve_metadata(3, 3, dataset_info=given)
        assert meta.state_names == tuple(JOINTS) == meta.action_names
        assert meta.fps == 25.0
        assert meta.source == "dataset-info"
        assert meta.notes == ()


def test_nested_names_of_older_datasets(tmp_path: Path) -> None:
    meta = resolve_metadata(3, 3, dataset_info=_info(tmp_path, names={"motors": JOINTS}))
    assert meta.action_names == tuple(JOINTS)


def test_arguments_win_over_dataset_info(tmp_path: Path) -> None:
    meta = resolve_metadata(3, 3, dataset_info=_info(tmp_path), joint_names=["x", "y", "z"], fps=10)
    assert meta.state_names == ("x", "y", "z")
    assert meta.fps == 10.0


def test_defaults_are_announced() -> None:
    meta = resolve_metadata(2, 2)
    assert meta.state_names == ("joint_0", "joint_1")
    assert meta.fps == DEFAULT_FPS
    assert meta.source == "default"
    assert len(meta.notes) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"joint_names": ["x", "x", "y"]}, "must be unique"),
        ({"joint_names": ["x", "y"]}, "gives 2 state names"),
        ({"fps": 0.0}, "fps must be a positive number"),
        ({"fps": float("nan")}, "fps must be a positive number"),
        ({"dataset_info": "/nonexistent/info.json"}, "dataset info not found"),
    ],
)
def test_bad_metadata(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ExportError, match=message):
        resolve_metadata(3, 3, **kwargs)  # type: ignore[arg-type]


def test_malformed_dataset_info(tmp_path: Path) -> None:
    bad = tmp_path / "info.json"
    bad.write_text("{not json")
    with pytest.raises(ExportError, match="cannot read dataset info"):
        resolve_metadata(3, 3, dataset_info=bad)
    with pytest.raises(ExportError, match="not a list of joint names"):
        resolve_metadata(3, 3, dataset_info=_info(tmp_path / "x", names=[1, 2, 3]))


def test_one_name_list_needs_equal_state_and_action_sizes() -> None:
    with pytest.raises(ExportError, match="sizes differ"):
        resolve_metadata(3, 4, joint_names=["x", "y", "z"])
