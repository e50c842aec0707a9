"""Export real (tiny) LeRobot ACT checkpoints and check what lands in the repository."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export import export_checkpoint, inspect_checkpoint
from export.checkpoint import sha256_file, stats_digest
from export.graph import load_policy
from export.parity import cpu_session
from export.synthetic import IMAGENET_WEIGHTS, BuiltCheckpoint, make_demo_checkpoint
from orchestrator.triton.model_contract import contract_from_config
from tests.support.exports import (
    ExportedRepository,
    clone_repository,
    run_export_cli,
    snapshot_tree,
)


def _parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_one_camera_config_is_a_valid_triton_config(
    exported_repository: ExportedRepository,
) -> None:
    repo, name = exported_repository.repository, exported_repository.name
    built = exported_repository.checkpoint
    config = _parse(repo / name / "config.pbtxt")
    assert config.name == name
    assert config.backend == "onnxruntime"
    assert config.max_batch_size == 32
    inputs = {i.name: (i.data_type, list(i.dims)) for i in config.input}
    assert inputs == {
        "observation.state": (mc.TYPE_FP32, [6]),
        "observation.images.front": (mc.TYPE_UINT8, [48, 64, 3]),
    }
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("action", mc.TYPE_FP32, [10, 6])
    ]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16, 32]
    assert [(g.count, g.kind) for g in config.instance_group] == [
        (1, mc.ModelInstanceGroup.KIND_CPU)
    ]
    contract = contract_from_config(config)
    assert contract.cameras == ("front",)
    assert contract.image_sizes == {"front": (48, 64)}
    assert contract.state_names == built.spec.joint_names == contract.action_names
    assert (contract.chunk_size, contract.n_action_steps, contract.fps) == (10, 5, 30.0)
    assert contract.info["lerobot_version"] == "0.6.1"
    assert contract.info["model_sha256"] == sha256_file(built.path / "model.safetensors")
    stats = tuple(sorted(built.path.glob("policy_*processor_step_*.safetensors")))
    assert contract.info["stats_sha256"] == stats_digest(stats)
    assert contract.info["onnx_sha256"] == sha256_file(repo / name / "1" / "model.onnx")
    assert contract.info["names_source"] == "dataset-info"
    assert not contract.is_demo
    assert exported_repository.result.parity_max_abs_error <= 1e-4
    assert sorted(p.name for p in (repo / name).iterdir()) == ["1", "config.pbtxt"]


def test_onnx_graph_has_lerobot_names_and_dynamic_batch(
    exported_repository: ExportedRepository,
) -> None:
    model = onnx.load(str(exported_repository.result.onnx_path), load_external_data=False)
    onnx.checker.check_model(model)

    def sig(values: list[onnx.ValueInfoProto]) -> dict[str, tuple[int, list[str | int]]]:
        return {
            v.name: (
                v.type.tensor_type.elem_type,
                [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values
        }

    assert sig(list(model.graph.input)) == {
        "observation.state": (onnx.TensorProto.FLOAT, ["batch", 6]),
        "observation.images.front": (onnx.TensorProto.UINT8, ["batch", 48, 64, 3]),
    }
    assert sig(list(model.graph.output)) == {"action": (onnx.TensorProto.FLOAT, ["batch", 10, 6])}


def test_written_model_matches_lerobot_at_an_unseen_batch_size(
    exported_repository: ExportedRepository,
) -> None:
    """Independent of the exporter's own check: batch 3, other inputs, robot units out."""
    built = exported_repository.checkpoint
    loaded = load_policy(inspect_checkpoint(built.path))
    session = cpu_session(exported_repository.result.onnx_path)
    rng = np.random.default_rng(42)
    state = rng.normal(5.0, 8.0, (3, 6)).astype(np.float32)
    frames = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    (got,) = session.run(None, {"observation.state": state, "observation.images.front": frames})
    expected = loaded.reference(
        torch.from_numpy(state), {"observation.images.front": torch.from_numpy(frames)}
    ).numpy()
    assert got.shape == (3, 10, 6)
    assert np.abs(got - expected).max() <= 1e-4
    # Actions come out in robot units: around the action stats, not around zero.
    assert np.abs(got).mean() > 1.0
    # The camera is wired in: another frame gives other actions.
    (other,) = session.run(
        None, {"observation.state": state, "observation.images.front": 255 - frames}
    )
    assert np.abs(other - got).max() > 1e-3


def test_two_cameras_non_square_seven_joints_via_cli(
    two_camera_checkpoint: BuiltCheckpoint, tmp_path: Path
) -> None:
    """CLI end to end; config.json names ImageNet weights, and nothing may download."""
    assert (
        json.loads((two_camera_checkpoint.path / "config.json").read_text())[
            "pretrained_backbone_weights"
        ]
        == IMAGENET_WEIGHTS
    )
    torch_home = tmp_path / "torch_home"
    repo = tmp_path / "repo"
    proc = run_export_cli(
        two_camera_checkpoint.path,
        "--repository",
        repo,
        "--name",
        "two_cam",
        "--kind",
        "cpu",
        "--instances",
        "2",
        "--max-batch-size",
        "8",
        "--max-queue-delay-us",
        "500",
        "--dataset-info",
        two_camera_checkpoint.dataset_info,
        "--cameras",
        "wrist,top",
        env={"TORCH_HOME": str(torch_home), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "parity max abs error:" in proc.stdout
    assert "parity at batch 1" in proc.stderr and "parity at batch 4" in proc.stderr
    assert not torch_home.exists() or not any(torch_home.rglob("*"))
    config = _parse(repo / "two_cam" / "config.pbtxt")
    assert {i.name: list(i.dims) for i in config.input} == {
        "observation.state": [7],
        "observation.images.top": [40, 72, 3],
        "observation.images.wrist": [40, 72, 3],
    }
    assert list(config.output[0].dims) == [12, 7]
    assert config.max_batch_size == 8
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(g.count, g.kind) for g in config.instance_group] == [
        (2, mc.ModelInstanceGroup.KIND_CPU)
    ]
    contract = contract_from_config(config)
    assert contract.cameras == ("top", "wrist")  # the checkpoint's order, not --cameras'
    assert contract.action_names == two_camera_checkpoint.spec.joint_names
    assert contract.fps == 50.0
    assert contract.info["normalization"] == "ACTION=MIN_MAX,STATE=MIN_MAX,VISUAL=MEAN_STD"
    assert (repo / "two_cam" / "1" / "model.onnx").is_file()
    # No staging folder is left next to the repository.
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_new_export_adds_next_version_and_keeps_older(
    exported_repository: ExportedRepository, tmp_path: Path
) -> None:
    repo = clone_repository(exported_repository.repository, tmp_path / "repo")
    name = exported_repository.name
    v1_before = snapshot_tree(repo / name / "1")
    proc = run_export_cli(exported_repository.checkpoint.path, "--repository", repo, "--name", name)
    assert proc.returncode == 0, proc.stderr
    assert "version 2" in proc.stdout
    # No --dataset-info: the exporter falls back and says so.
    assert "note: no joint names given" in proc.stdout
    assert "note: no fps given" in proc.stdout
    assert snapshot_tree(repo / name / "1") == v1_before
    assert sorted(p.name for p in (repo / name).iterdir()) == ["1", "2", "config.pbtxt"]
    config = _parse(repo / name / "config.pbtxt")
    contract = contract_from_config(config)
    assert contract.state_names == tuple(f"joint_{i}" for i in range(6))
    assert contract.fps == 30.0
    assert contract.info["names_source"] == "default"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU  # the CLI default
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]


def test_demo_checkpoint_exports_as_demo(tmp_path: Path) -> None:
    built = make_demo_checkpoint(tmp_path / "demo")
    result = export_checkpoint(
        built.path, tmp_path / "repo", "demo_act", kind="cpu", dataset_info=built.dataset_info
    )
    config = _parse(result.config_path)
    contract = contract_from_config(config)
    assert contract.is_demo
    assert contract.info["demo"] == "true"
    assert contract.image_sizes == {"front": (96, 128)}
    assert result.parity_max_abs_error <= 1e-4


def test_training_checkpoint_folder_is_accepted(exported_repository: ExportedRepository) -> None:
    """``outputs/.../checkpoints/last`` holds the policy in ``pretrained_model/``."""
    built = exported_repository.checkpoint
    info = inspect_checkpoint(built.path.parent)
    assert info.path == built.path
    assert info.cameras == ("front",)
    assert (info.state_dim, info.action_dim, info.chunk_size) == (6, 6, 10)


def test_joint_limits_are_recorded_for_the_safety_layer(
    exported_repository: ExportedRepository, tmp_path: Path
) -> None:
    repo = clone_repository(exported_repository.repository, tmp_path / "repo")
    name = exported_repository.name
    checkpoint = exported_repository.checkpoint
    proc = run_export_cli(
        checkpoint.path, "--repository", repo, "--name", name,
        "--dataset-info", checkpoint.dataset_info,
        "--joint-limits", "shoulder_pan.pos=-90:90,gripper.pos=0:45",
    )
    assert proc.returncode == 0, proc.stderr
    contract = contract_from_config(_parse(repo / name / "config.pbtxt"))
    assert json.loads(contract.info["joint_limits"]) == {
        "shoulder_pan.pos": [-90.0, 90.0], "gripper.pos": [0.0, 45.0]
    }
    # Unknown joints and reversed ranges are refused before any work, repository untouched.
    before = snapshot_tree(repo)
    for bad, message in (("elbow=0:1", "unknown joints ['elbow']"),
                         ("gripper.pos=50:10", "LOW < HIGH")):
        proc = run_export_cli(
            checkpoint.path, "--repository", repo, "--name", name,
            "--dataset-info", checkpoint.dataset_info, "--joint-limits", bad,
        )
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert snapshot_tree(repo) == before
