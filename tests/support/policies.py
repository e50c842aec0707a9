"""Small real policies with the SO-100 joint names, for safety, fault and soak runs.

Each is a real ONNX graph with an exported ACT's signature (``tests.support.triton``'s tiny
graph), served by a real Triton; only its output bias is chosen so the model misbehaves on
purpose: one joint far out of range (the safety layer must clamp it), or NaN (the safety
path must never publish it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from orchestrator.triton.model_contract import ModelContract, build_model_config, render_config
from tests.support.triton import tiny_onnx

SO100 = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
SO100_POS = tuple(f"{j}.pos" for j in SO100)
CHUNK = 10


def so100_contract(name: str, info: Mapping[str, str] | None = None,
                   chunk_size: int = CHUNK) -> ModelContract:
    return ModelContract(
        name=name, state_names=SO100_POS, action_names=SO100_POS, cameras=("front",),
        image_sizes={"front": (24, 32)}, chunk_size=chunk_size, n_action_steps=chunk_size,
        fps=30.0,
        info={"demo": "true", **(info or {})},
    )


def write_so100_model(
    repository: Path,
    name: str,
    *,
    bias: Mapping[str, float] | None = None,
    joint_limits: Mapping[str, tuple[float, float]] | None = None,
    seed: int = 0,
    chunk_size: int = CHUNK,
) -> ModelContract:
    """``REPO/NAME`` (CPU config, version 1). ``bias``: joint -> value added to every action
    of that joint (``nan`` makes the model emit NaN for it). ``joint_limits`` go into the
    model's metadata, as an exporter would record them."""
    info = {"joint_limits": json.dumps({k: list(v) for k, v in joint_limits.items()})} \
        if joint_limits else {}
    contract = so100_contract(name, info, chunk_size)
    model = tiny_onnx(contract, seed)
    for init in model.graph.initializer:
        if init.name == "bias" and bias:
            values = numpy_helper.to_array(init).copy().reshape(chunk_size, len(SO100_POS))
            for joint, shift in bias.items():
                values[:, SO100_POS.index(joint)] += np.float32(shift)
            init.CopyFrom(numpy_helper.from_array(values.reshape(-1), "bias"))
    model_dir = Path(repository) / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    config = build_model_config(contract, kind="cpu", max_queue_delay_us=2000)
    (model_dir / "config.pbtxt").write_text(render_config(config))
    onnx.save(model, model_dir / "1" / "model.onnx")
    return contract
