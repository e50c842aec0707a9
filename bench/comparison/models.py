"""The models of the comparison: built offline, exported once, and run in-process at batch 1
for the per-session baseline (ONNX Runtime, and PyTorch eager through LeRobot).

Every model is a LeRobot ACT checkpoint with random weights saved as LeRobot saves them
(``export.synthetic``), exported by the real exporter into one model repository that the
local Triton serves. The baselines load the very same files: the ONNX graph for ONNX
Runtime, the checkpoint folder for LeRobot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from export.synthetic import DEFAULT_ACT, CheckpointSpec
from orchestrator.triton.model_contract import (
    ACTION_OUTPUT,
    STATE_INPUT,
    ModelContract,
    image_input,
)

# A small ACT that keeps the run short: ResNet18 on a 96x128 camera, a 128-d transformer,
# chunk 50 executed whole (n_action_steps = chunk_size, as in ACT's defaults).
SMALL_ACT = CheckpointSpec(
    cameras=("front",), image_size=(96, 128), chunk_size=50, n_action_steps=50,
    dim_model=128, n_heads=4, dim_feedforward=512, n_encoder_layers=2, n_decoder_layers=1,
    n_vae_encoder_layers=1, latent_dim=16, seed=3,
)  # fmt: skip
# For the smoke test only: the smallest ACT LeRobot builds (48x64 camera, chunk 20).
TINY_ACT = CheckpointSpec(
    cameras=("front",), image_size=(48, 64), chunk_size=20, n_action_steps=20, seed=5,
)
# The small ACT's transformer on a 48x64 camera with chunk 100 (3.3 s at 30 Hz): a few ms
# of CPU inference per request and a third of the small ACT's requests, so that at tens of
# sessions the 2 cores run out on the control plane, not on the model (as on an accelerator).
LIGHT_ACT = CheckpointSpec(
    cameras=("front",), image_size=(48, 64), chunk_size=100, n_action_steps=100,
    dim_model=128, n_heads=4, dim_feedforward=512, n_encoder_layers=2, n_decoder_layers=1,
    n_vae_encoder_layers=1, latent_dim=16, seed=7,
)  # fmt: skip
SPECS: dict[str, CheckpointSpec] = {
    "tiny": TINY_ACT,
    "light": LIGHT_ACT,
    "small": SMALL_ACT,
    "default": DEFAULT_ACT,  # LeRobot ACT defaults, ResNet18 on 480x640
}


@dataclass(frozen=True)
class BenchModel:
    size: str  # a key of SPECS
    name: str  # the Triton model name
    spec: CheckpointSpec
    checkpoint: Path  # the LeRobot checkpoint folder (pretrained_model)
    onnx_path: Path
    contract: ModelContract

    def describe(self) -> dict[str, Any]:
        s = self.spec
        return {
            "size": self.size,
            "triton_model": self.name,
            "image_hw": list(s.image_size),
            "cameras": list(s.cameras),
            "chunk_size": s.chunk_size,
            "n_action_steps": s.n_action_steps,
            "dim_model": s.dim_model,
            "encoder_layers": s.n_encoder_layers,
            "backbone": "resnet18",
            "fps": s.fps,
            "onnx_mb": round(self.onnx_path.stat().st_size / 2**20, 1),
        }


def prepare_models(sizes: list[str], root: Path) -> tuple[Path, dict[str, BenchModel]]:
    """Build and export every requested size into ``root/model_repository``."""
    from export import export_checkpoint  # the export extra: torch + lerobot
    from export.synthetic import build_checkpoint

    repository = root / "model_repository"
    models: dict[str, BenchModel] = {}
    for size in sizes:
        spec = SPECS[size]
        name = f"bench_{size}_act"
        built = build_checkpoint(spec, root / f"{size}_checkpoint")
        result = export_checkpoint(built.path, repository, name, kind="cpu",
                                   dataset_info=built.dataset_info)
        models[size] = BenchModel(size, name, spec, built.path, result.onnx_path,
                                  result.contract)
    return repository, models


class Runner(Protocol):
    """One session's own copy of the model: Triton-style inputs in, [1, chunk, dim] out."""

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


def ort_session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


class OrtRunner:
    def __init__(self, model: BenchModel, threads: int = 1) -> None:
        self._session = ort_session(model.onnx_path, threads)

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._session.run([ACTION_OUTPUT], inputs)[0])


class TorchRunner:
    """LeRobot's own inference path: ACTPolicy + the checkpoint's pre/post processors,
    loaded offline (``pretrained_backbone_weights=None``: nothing downloads)."""

    def __init__(self, model: BenchModel) -> None:
        from export import inspect_checkpoint
        from export.graph import load_policy

        self._loaded = load_policy(inspect_checkpoint(model.checkpoint))
        self._cameras = model.contract.cameras

    def infer(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        state = torch.from_numpy(np.ascontiguousarray(inputs[STATE_INPUT]))
        images = {image_input(c): torch.from_numpy(inputs[image_input(c)]) for c in self._cameras}
        return np.asarray(self._loaded.reference(state, images).numpy())


def make_runner(kind: str, model: BenchModel, threads: int) -> Runner:
    """A session's own model, warmed up (first runs pay for lazy initialisation; Triton's
    model is warm too by the time it is measured)."""
    runner: Runner
    if kind == "onnxruntime":
        runner = OrtRunner(model, threads)
    elif kind == "pytorch":
        import torch

        torch.set_num_threads(threads)  # the same budget as ONNX Runtime's sessions
        runner = TorchRunner(model)
    else:
        raise ValueError(f"unknown runtime {kind!r}")
    for seed in range(3):
        runner.infer(random_inputs(model.contract, 1, seed))
    return runner


def random_inputs(contract: ModelContract, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {
        STATE_INPUT: rng.standard_normal((batch, contract.state_dim)).astype(np.float32)
    }
    for cam in contract.cameras:
        h, w = contract.image_sizes[cam]
        out[image_input(cam)] = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    return out


def ort_ceiling(model: BenchModel, batch_sizes: list[int], threads: int,
                seconds_per_size: float = 2.0) -> dict[str, Any]:
    """Raw ONNX Runtime throughput in-process at each batch size (what Triton's single
    instance runs, with the same thread count): the most the stack could get out of it."""
    session = ort_session(model.onnx_path, threads)
    out: dict[str, Any] = {}
    for batch in sorted(set(batch_sizes)):
        inputs = random_inputs(model.contract, batch, seed=batch)
        session.run([ACTION_OUTPUT], inputs)  # warm-up
        times: list[float] = []
        started = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - started < seconds_per_size
                                 and len(times) < 200):
            t0 = time.perf_counter()
            session.run([ACTION_OUTPUT], inputs)
            times.append(time.perf_counter() - t0)
        p50 = float(np.median(times))
        out[str(batch)] = {"runs": len(times), "batch_ms_p50": round(p50 * 1000, 3),
                           "samples_per_s": round(batch / p50, 2)}
    return out
