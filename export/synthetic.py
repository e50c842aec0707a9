"""Random-weight LeRobot ACT checkpoints built offline, saved exactly as LeRobot 0.6.1 saves
them: the demo model of the local stack, and the fixtures of tests and benchmarks.

``build_checkpoint(spec, folder)`` writes ``folder/pretrained_model`` (``config.json``,
``model.safetensors``, the pre/post processor JSON and normalizer stats) with LeRobot's own
``save_pretrained`` calls, and ``folder/meta/info.json`` as a LeRobot dataset would hold it
(joint names and fps, which ACT checkpoints do not store).

Weights are random (seeded) and the ResNet18 backbone is built with
``pretrained_backbone_weights=None`` so nothing downloads. ``record_imagenet_backbone``
writes the ImageNet weights name into ``config.json`` afterwards, as real training runs
do, to prove the exporter still never downloads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGENET_WEIGHTS = "ResNet18_Weights.IMAGENET1K_V1"
SO100_JOINTS = (
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
)


@dataclass(frozen=True)
class CheckpointSpec:
    cameras: tuple[str, ...] = ("front",)
    image_size: tuple[int, int] = (48, 64)  # (height, width), same for every camera (ACT)
    joint_names: tuple[str, ...] = SO100_JOINTS
    fps: int = 30
    chunk_size: int = 10
    n_action_steps: int = 5
    dim_model: int = 32
    n_heads: int = 2
    dim_feedforward: int = 64
    n_encoder_layers: int = 1
    n_decoder_layers: int = 1
    n_vae_encoder_layers: int = 1  # training-only, but its weights are in the checkpoint
    latent_dim: int = 8
    # NormalizationMode names per feature type, as in ACTConfig.normalization_mapping.
    normalization: dict[str, str] = field(
        default_factory=lambda: {"VISUAL": "MEAN_STD", "STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
    )
    # Spread of the joint stats in robot units. Float32 noise between ONNX Runtime and torch
    # is ~1e-6 of the output's size, so this keeps parity far below the 1e-4 bound.
    stats_scale: float = 10.0
    record_imagenet_backbone: bool = False
    seed: int = 0


@dataclass(frozen=True)
class BuiltCheckpoint:
    path: Path  # the checkpoint folder to export (".../pretrained_model")
    dataset_info: Path  # ".../meta/info.json" with joint names and fps
    spec: CheckpointSpec

    @property
    def camera_keys(self) -> tuple[str, ...]:
        return tuple(f"observation.images.{c}" for c in self.spec.cameras)


ONE_CAMERA = CheckpointSpec()
TWO_CAMERAS = CheckpointSpec(
    cameras=("top", "wrist"),
    image_size=(40, 72),
    joint_names=(*SO100_JOINTS[:5], "wrist_yaw.pos", "gripper.pos"),
    fps=50,
    chunk_size=12,
    n_action_steps=6,
    normalization={"VISUAL": "MEAN_STD", "STATE": "MIN_MAX", "ACTION": "MIN_MAX"},
    record_imagenet_backbone=True,
    seed=1,
)
# LeRobot's ACTConfig defaults with one 480x640 camera and 6 joints: what users train.
DEFAULT_ACT = CheckpointSpec(
    cameras=("front",),
    image_size=(480, 640),
    chunk_size=100,
    n_action_steps=100,
    dim_model=512,
    n_heads=8,
    dim_feedforward=3200,
    n_encoder_layers=4,
    n_decoder_layers=1,
    n_vae_encoder_layers=4,
    latent_dim=32,
    record_imagenet_backbone=True,
)
DEMO = CheckpointSpec(
    cameras=("front",),
    image_size=(96, 128),
    chunk_size=50,
    n_action_steps=25,
    dim_model=64,
    n_heads=4,
    dim_feedforward=128,
    latent_dim=16,
    seed=7,
)


def _joint_stats(rng: np.random.Generator, dim: int, scale: float) -> dict[str, np.ndarray]:
    mean = rng.uniform(-scale, scale, dim).astype(np.float32)
    std = rng.uniform(0.2 * scale, scale, dim).astype(np.float32)
    return {
        "mean": mean,
        "std": std,
        "min": (mean - 3 * std).astype(np.float32),
        "max": (mean + 3 * std).astype(np.float32),
        "count": np.array([1000], dtype=np.int64),
    }


def _image_stats(rng: np.random.Generator) -> dict[str, np.ndarray]:
    # Shape (3, 1, 1) per channel, as lerobot.datasets.compute_stats writes for images.
    mean = rng.uniform(0.3, 0.6, (3, 1, 1)).astype(np.float32)
    std = rng.uniform(0.15, 0.3, (3, 1, 1)).astype(np.float32)
    return {
        "mean": mean,
        "std": std,
        "min": np.zeros((3, 1, 1), np.float32),
        "max": np.ones((3, 1, 1), np.float32),
        "count": np.array([1000], dtype=np.int64),
    }


def _dataset_info(spec: CheckpointSpec) -> dict[str, object]:
    """The parts of a LeRobot v3 ``meta/info.json`` the exporter reads."""
    h, w = spec.image_size
    names = list(spec.joint_names)
    features: dict[str, object] = {
        "action": {"dtype": "float32", "shape": [len(names)], "names": names},
        "observation.state": {"dtype": "float32", "shape": [len(names)], "names": names},
    }
    for cam in spec.cameras:
        features[f"observation.images.{cam}"] = {
            "dtype": "video",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
        }
    return {
        "codebase_version": "v3.0",
        "robot_type": "so100_follower",
        "fps": spec.fps,
        "features": features,
    }


def build_checkpoint(spec: CheckpointSpec, folder: str | Path) -> BuiltCheckpoint:
    """Train nothing: build an ACT policy with random weights and save it like LeRobot."""
    import torch
    from lerobot.configs import FeatureType, NormalizationMode, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    root = Path(folder)
    out = root / "pretrained_model"
    dim = len(spec.joint_names)
    h, w = spec.image_size
    inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(dim,))}
    for cam in spec.cameras:
        inputs[f"observation.images.{cam}"] = PolicyFeature(
            type=FeatureType.VISUAL, shape=(3, h, w)
        )
    config = ACTConfig(
        input_features=inputs,
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(dim,))},
        chunk_size=spec.chunk_size,
        n_action_steps=spec.n_action_steps,
        dim_model=spec.dim_model,
        n_heads=spec.n_heads,
        dim_feedforward=spec.dim_feedforward,
        n_encoder_layers=spec.n_encoder_layers,
        n_decoder_layers=spec.n_decoder_layers,
        n_vae_encoder_layers=spec.n_vae_encoder_layers,
        latent_dim=spec.latent_dim,
        pretrained_backbone_weights=None,
        normalization_mapping={k: NormalizationMode(v) for k, v in spec.normalization.items()},
        device="cpu",
    )
    torch.manual_seed(spec.seed)
    policy = ACTPolicy(config)
    rng = np.random.default_rng(spec.seed)
    stats: dict[str, dict[str, np.ndarray]] = {
        "observation.state": _joint_stats(rng, dim, spec.stats_scale),
        "action": _joint_stats(rng, dim, spec.stats_scale),
    }
    for cam in spec.cameras:
        stats[f"observation.images.{cam}"] = _image_stats(rng)
    preprocessor, postprocessor = make_pre_post_processors(config, dataset_stats=stats)
    if spec.record_imagenet_backbone:
        config.pretrained_backbone_weights = IMAGENET_WEIGHTS
    policy.save_pretrained(out)
    preprocessor.save_pretrained(out)
    postprocessor.save_pretrained(out)
    info_path = root / "meta" / "info.json"
    info_path.parent.mkdir(parents=True, exist_ok=True)
    info_path.write_text(json.dumps(_dataset_info(spec), indent=2))
    return BuiltCheckpoint(path=out, dataset_info=info_path, spec=spec)


def make_one_camera_checkpoint(folder: str | Path) -> BuiltCheckpoint:
    return build_checkpoint(ONE_CAMERA, folder)


def make_two_camera_checkpoint(folder: str | Path) -> BuiltCheckpoint:
    """Two cameras, non-square 40x72 frames, 7 joints, MIN_MAX state/action stats."""
    return build_checkpoint(TWO_CAMERAS, folder)


def make_demo_checkpoint(
    folder: str | Path,
    *,
    cameras: Sequence[str] = DEMO.cameras,
    image_size: tuple[int, int] = DEMO.image_size,
) -> BuiltCheckpoint:
    """A random-weight model for the local demo stack; its exports carry info demo=true."""
    from dataclasses import replace

    from export.checkpoint import DEMO_MARKER_FILE

    built = build_checkpoint(replace(DEMO, cameras=tuple(cameras), image_size=image_size), folder)
    (built.path / DEMO_MARKER_FILE).write_text(
        json.dumps({"demo": True, "note": "random weights: for demos and tests, not a robot"})
    )
    return built
