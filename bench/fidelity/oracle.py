"""Oracle policies: tiny ONNX models with an ACT model's interface whose chunks are known.

Each chunk continues the observed position along a ramp, ``a[i] = p + (i + 1) * v / fps``
per joint, so in closed loop (a robot that goes where it is told) the ideal command at
every tick is known: the stream should advance by exactly ``v / fps`` per tick, whatever
the latency. ``p`` is read from the joint state (``source="state"``) or from the camera
frame, where the simulated robot draws its joint positions at capture
(``source="camera"``, sim_robot.pattern's value code; frames are older than joint
readings). ``disagreement > 0`` adds an offset in ``[-d, d]`` that depends on the
observation (as two observations of one scene give two different plans), so consecutive
chunks disagree by a bounded amount.

The graph is a torch module exported to ONNX and written into a model repository with the
exporter's own writer and config (``build_model_config``: same inputs as an ACT model of
those cameras, the metadata the orchestrator reads): the stack serves it unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from export.repository import StagedModel, choose_version
from orchestrator.triton.model_contract import (
    ACTION_OUTPUT,
    STATE_INPUT,
    ModelContract,
    build_model_config,
    image_input,
    render_config,
)
from sim_robot.pattern import INDEX_BITS, VALUE_OFFSET, VALUE_SCALE

Source = Literal["state", "camera"]
_ROWS, _COLS, _CODE_ROWS, _VALUE_ROWS = 12, 16, 3, 3  # sim_robot.pattern's layout


@dataclass(frozen=True)
class OracleSpec:
    name: str
    source: Source
    joints: tuple[str, ...]
    velocity: tuple[float, ...]  # units per second, per joint
    chunk_size: int = 50
    fps: float = 30.0
    image_hw: tuple[int, int] = (144, 192)
    disagreement: float = 0.0  # max offset between two chunks' plans (units)
    camera: str = "front"

    def contract(self) -> ModelContract:
        wide = {j: [-1e4, 1e4] for j in self.joints}  # a ramp leaves -100..100 quickly
        return ModelContract(
            name=self.name, state_names=self.joints, action_names=self.joints,
            cameras=(self.camera,), image_sizes={self.camera: self.image_hw},
            chunk_size=self.chunk_size, n_action_steps=self.chunk_size, fps=self.fps,
            info={"joint_limits": json.dumps(wide), "oracle": self.source,
                  "oracle_velocity": json.dumps(list(self.velocity)),
                  "oracle_disagreement": repr(self.disagreement)},
        )


class RampOracle(torch.nn.Module):
    steps: torch.Tensor  # [H, D] buffers
    weights: torch.Tensor

    def __init__(self, spec: OracleSpec) -> None:
        super().__init__()
        self.source = spec.source
        self.disagreement = float(spec.disagreement)
        self.dim = len(spec.joints)
        velocity = torch.tensor(spec.velocity, dtype=torch.float32)
        steps = torch.arange(1, spec.chunk_size + 1, dtype=torch.float32)[:, None]
        self.register_buffer("steps", steps * velocity[None, :] / spec.fps)
        self.register_buffer("weights", 2.0 ** torch.arange(INDEX_BITS, dtype=torch.float32))
        height, width = spec.image_hw
        self.bh, self.bw = height // _ROWS, width // _COLS

    def read_frame(self, image: torch.Tensor) -> torch.Tensor:
        """The joint positions drawn in the frame: block means, pair comparisons, bits."""
        rows = _CODE_ROWS + _VALUE_ROWS * self.dim
        bh, bw = self.bh, self.bw
        luma = image[:, : rows * bh, : _COLS * bw, 1].to(torch.float32)
        blocks = luma.reshape(-1, rows, bh, _COLS, bw)
        inner = blocks[:, :, bh // 4 : bh // 4 + bh // 2, :, bw // 4 : bw // 4 + bw // 2]
        means = inner.mean(dim=(2, 4)).reshape(-1, rows * _COLS)[:, _CODE_ROWS * _COLS :]
        pairs = means.reshape(-1, self.dim, 2 * INDEX_BITS)
        bits = (pairs[:, :, 0::2] > pairs[:, :, 1::2]).to(torch.float32)
        word = (bits * self.weights).sum(dim=-1)
        return (word - VALUE_OFFSET) / VALUE_SCALE

    def forward(self, state: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if self.source == "camera":
            base = self.read_frame(image) + 0.0 * state
        else:
            base = state + 0.0 * image[:, 0, 0, 0:1].to(torch.float32)
        if self.disagreement > 0:
            # A pseudo-random offset in [-d, d] from the observation itself.
            x = torch.abs(state[:, 0:1]) * 7.31 + 0.137
            phase = x - torch.floor(x)
            base = base + self.disagreement * (2.0 * phase - 1.0)
        out: torch.Tensor = base[:, None, :] + self.steps[None, :, :]
        return out


def export_oracle(spec: OracleSpec, repository: Path) -> Path:
    """Write ``repository/<name>/<N>/model.onnx`` and its config; returns the version dir."""
    contract = spec.contract()
    module = RampOracle(spec).eval()
    height, width = spec.image_hw
    state = torch.zeros(1, len(spec.joints), dtype=torch.float32)
    image = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    config = render_config(build_model_config(contract, kind="cpu", max_queue_delay_us=500))
    with StagedModel(repository, spec.name) as staged:
        torch.onnx.export(
            module, (state, image), str(staged.onnx_path),
            input_names=[STATE_INPUT, image_input(spec.camera)], output_names=[ACTION_OUTPUT],
            dynamic_axes={STATE_INPUT: {0: "batch"}, image_input(spec.camera): {0: "batch"},
                          ACTION_OUTPUT: {0: "batch"}},
            opset_version=17, dynamo=False,
        )
        version = choose_version(repository / spec.name, None)
        return staged.commit(config, version)
