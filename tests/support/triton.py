"""Shared helpers to run a real local Triton in tests and benchmarks.

``tiny_contract`` / ``write_tiny_model`` build a small but real ONNX graph with
exactly the I/O signature of an exported ACT policy (``observation.state``,
``observation.images.<cam>`` UINT8 HWC, ``action`` FP32 [chunk, action_dim]),
written into a Triton model repository the way the exporter does.
``local_triton`` starts the server on free ports and always stops it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.model_contract import (
    ACTION_OUTPUT,
    STATE_INPUT,
    ModelContract,
    build_model_config,
    image_input,
    render_config,
)


def tiny_contract(
    name: str = "tiny_act",
    *,
    cameras: Sequence[str] = ("front",),
    image_size: tuple[int, int] = (24, 32),
    state_dim: int = 6,
    chunk_size: int = 10,
) -> ModelContract:
    joints = tuple(f"joint_{i}.pos" for i in range(state_dim))
    return ModelContract(
        name=name,
        state_names=joints,
        action_names=joints,
        cameras=tuple(cameras),
        image_sizes={c: image_size for c in cameras},
        chunk_size=chunk_size,
        n_action_steps=chunk_size,
        fps=30.0,
        info={"demo": "true", "source": "tests.support.triton tiny model"},
    )


def tiny_onnx(contract: ModelContract, seed: int = 0) -> onnx.ModelProto:
    """action = reshape(W · [state, mean(image_c) for c] + b): every input matters."""
    rng = np.random.default_rng(seed)
    features = contract.state_dim + len(contract.cameras)
    out = contract.chunk_size * contract.action_dim
    weight = rng.standard_normal((features, out)).astype(np.float32)
    bias = rng.standard_normal(out).astype(np.float32)
    inputs = [
        helper.make_tensor_value_info(STATE_INPUT, TensorProto.FLOAT, ["B", contract.state_dim])
    ]
    nodes = []
    parts = [STATE_INPUT]
    for cam in contract.cameras:
        h, w = contract.image_sizes[cam]
        name = image_input(cam)
        inputs.append(helper.make_tensor_value_info(name, TensorProto.UINT8, ["B", h, w, 3]))
        nodes += [
            helper.make_node("Cast", [name], [f"{cam}_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", [f"{cam}_f", "img_axes"], [f"{cam}_m"], keepdims=0),
            helper.make_node("Unsqueeze", [f"{cam}_m", "one_axis"], [f"{cam}_u"]),
            helper.make_node("Mul", [f"{cam}_u", "img_scale"], [f"{cam}_s"]),
        ]
        parts.append(f"{cam}_s")
    nodes += [
        helper.make_node("Concat", parts, ["features"], axis=1),
        helper.make_node("MatMul", ["features", "weight"], ["flat"]),
        helper.make_node("Add", ["flat", "bias"], ["flat_b"]),
        helper.make_node("Reshape", ["flat_b", "out_shape"], [ACTION_OUTPUT]),
    ]
    initializers = [
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64), "img_axes"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "one_axis"),
        numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "img_scale"),
        numpy_helper.from_array(
            np.array([-1, contract.chunk_size, contract.action_dim], dtype=np.int64), "out_shape"
        ),
    ]
    output = helper.make_tensor_value_info(
        ACTION_OUTPUT, TensorProto.FLOAT, ["B", contract.chunk_size, contract.action_dim]
    )
    graph = helper.make_graph(nodes, contract.name, inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def write_tiny_model(
    repository: Path,
    contract: ModelContract | None = None,
    *,
    version: int = 1,
    seed: int = 0,
    max_batch_size: int = 32,
    max_queue_delay_us: int = 2000,
) -> Path:
    """Write ``REPO/NAME/config.pbtxt`` and ``REPO/NAME/<version>/model.onnx`` (returned)."""
    contract = contract or tiny_contract()
    model_dir = Path(repository) / contract.name
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    config = build_model_config(
        contract, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us
    )
    (model_dir / "config.pbtxt").write_text(render_config(config))
    path = model_dir / str(version) / "model.onnx"
    onnx.save(tiny_onnx(contract, seed), path)
    return path


_SLEEP_MODEL = """\
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep({seconds})
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy())]
            )
            for r in requests
        ]
"""

_SLEEP_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: 8
input {{ name: "x" data_type: TYPE_FP32 dims: [ {width} ] }}
output {{ name: "y" data_type: TYPE_FP32 dims: [ {width} ] }}
instance_group {{ count: 1 kind: KIND_CPU }}
"""

# Requests beyond the queue's size are refused by a live server (UNAVAILABLE).
_QUEUE_POLICY = "dynamic_batching {{ default_queue_policy {{ max_queue_size: {size} }} }}\n"


def write_sleep_model(
    repository: Path, name: str = "sleepy", seconds: float = 1.0, width: int = 2,
    max_queue_size: int | None = None,
) -> None:
    """A python-backend model (``x`` -> ``y``, FP32 [width]) that takes ``seconds`` per batch.

    For real timeouts: a request with a shorter deadline is late whatever the machine.
    """
    model_dir = Path(repository) / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    config = _SLEEP_CONFIG.format(name=name, width=width)
    if max_queue_size is not None:
        config += _QUEUE_POLICY.format(size=max_queue_size)
    (model_dir / "config.pbtxt").write_text(config)
    (model_dir / "1" / "model.py").write_text(_SLEEP_MODEL.format(seconds=float(seconds)))


def random_observation(
    contract: ModelContract, batch: int = 1, seed: int | None = None
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state = rng.standard_normal((batch, contract.state_dim)).astype(np.float32)
    obs: dict[str, np.ndarray] = {STATE_INPUT: state}
    for cam in contract.cameras:
        h, w = contract.image_sizes[cam]
        obs[image_input(cam)] = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    return obs


@contextmanager
def local_triton(
    model_repository: str | os.PathLike[str],
    *,
    work_dir: str | os.PathLike[str] | None = None,
    timeout_s: float = 120.0,
    **kwargs: object,
) -> Iterator[LocalTriton]:
    """A started :class:`LocalTriton` on free 127.0.0.1 ports, closed on exit whatever happens."""
    triton = LocalTriton(model_repository, work_dir=work_dir, **kwargs)  # type: ignore[arg-type]
    try:
        triton.start(timeout_s)
        yield triton
    finally:
        triton.close()
