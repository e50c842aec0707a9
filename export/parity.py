"""ONNX Runtime against the LeRobot pipeline, on random non-zero inputs."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from orchestrator.triton.model_contract import STATE_INPUT, image_input

from .checkpoint import CheckpointInfo
from .errors import ExportError
from .graph import LoadedPolicy, example_inputs

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4
DEFAULT_BATCHES = (1, 4)


def cpu_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_abs_error(
    loaded: LoadedPolicy,
    info: CheckpointInfo,
    onnx_path: Path,
    batch_sizes: Sequence[int] = DEFAULT_BATCHES,
    seed: int = 1,
) -> float:
    """Largest |onnx - lerobot| over all outputs at the given batch sizes."""
    session = cpu_session(onnx_path)
    worst = 0.0
    for i, batch in enumerate(batch_sizes):
        state, *frames = example_inputs(info, batch, seed=seed + i)
        feeds = {STATE_INPUT: state.numpy()}
        feeds.update({image_input(c): f.numpy() for c, f in zip(info.cameras, frames, strict=True)})
        (onnx_out,) = session.run(None, feeds)
        images = {image_input(c): f for c, f in zip(info.cameras, frames, strict=True)}
        expected = loaded.reference(state, images).numpy()
        if onnx_out.shape != expected.shape:
            raise ExportError(
                f"parity: ONNX output shape {onnx_out.shape} != LeRobot {expected.shape}"
            )
        err = float(np.max(np.abs(onnx_out.astype(np.float64) - expected)))
        logger.info("parity at batch %d: max abs error %.3g", batch, err)
        worst = max(worst, err)
    return worst
