"""What a policy model promises its clients, as stored in Triton's model config.

The exporter writes this contract into ``config.pbtxt`` ``parameters``; the
orchestrator reads it back from Triton (never from its own constants). Keeping
both directions in one module means the two sides cannot drift apart.

Tensor names are LeRobot's feature keys: ``observation.state``,
``observation.images.<camera>`` (UINT8 ``[B, H, W, 3]``) and ``action``
(FP32 ``[B, chunk_size, action_dim]``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

STATE_INPUT = "observation.state"
IMAGE_PREFIX = "observation.images."
ACTION_OUTPUT = "action"


def image_input(camera: str) -> str:
    return IMAGE_PREFIX + camera


class ContractError(ValueError):
    """The model's config does not describe a usable ACT policy."""


@dataclass(frozen=True)
class ModelContract:
    name: str
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    cameras: tuple[str, ...]
    image_sizes: Mapping[str, tuple[int, int]]  # camera -> (height, width)
    chunk_size: int
    n_action_steps: int
    fps: float
    version: str | None = None
    # Provenance: lerobot version, sha256 of weights and stats, demo flag, ...
    info: Mapping[str, str] = field(default_factory=dict)

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def is_demo(self) -> bool:
        return self.info.get("demo", "false") == "true"

    def to_parameters(self) -> dict[str, str]:
        params = {
            "policy_type": "act",
            "cameras": json.dumps(list(self.cameras)),
            "image_sizes": json.dumps({c: list(self.image_sizes[c]) for c in self.cameras}),
            "state_names": json.dumps(list(self.state_names)),
            "action_names": json.dumps(list(self.action_names)),
            "chunk_size": str(self.chunk_size),
            "n_action_steps": str(self.n_action_steps),
            "fps": repr(float(self.fps)),
        }
        params.update({k: v for k, v in self.info.items() if k not in params})
        return params

    @classmethod
    def from_parameters(
        cls, name: str, params: Mapping[str, str], version: str | None = None
    ) -> ModelContract:
        try:
            cameras = tuple(json.loads(params["cameras"]))
            sizes_raw = json.loads(params["image_sizes"])
            contract = cls(
                name=name,
                version=version,
                state_names=tuple(json.loads(params["state_names"])),
                action_names=tuple(json.loads(params["action_names"])),
                cameras=cameras,
                image_sizes={c: (int(sizes_raw[c][0]), int(sizes_raw[c][1])) for c in cameras},
                chunk_size=int(params["chunk_size"]),
                n_action_steps=int(params["n_action_steps"]),
                fps=float(params["fps"]),
                info={k: v for k, v in params.items() if k not in _CORE_KEYS},
            )
        except KeyError as exc:
            raise ContractError(
                f"model {name!r} has no {exc.args[0]!r} parameter in its config: "
                "was it written by `python -m export`?"
            ) from exc
        except (ValueError, TypeError, IndexError) as exc:
            raise ContractError(f"model {name!r} has malformed contract parameters: {exc}") from exc
        if contract.chunk_size < 1 or contract.fps <= 0 or not contract.action_names:
            raise ContractError(f"model {name!r}: chunk_size, fps and action names must be set")
        return contract


_CORE_KEYS = frozenset(
    {"cameras", "image_sizes", "state_names", "action_names", "chunk_size", "n_action_steps", "fps"}
)


# Where the production Triton keeps TensorRT engines (a volume in docker-compose.yml): the
# model repository is mounted read-only, and a restart must not rebuild every engine.
TRT_CACHE_DIR = "/var/cache/tensorrt"
TRT_WORKSPACE_BYTES = 1 << 30


def build_model_config(
    contract: ModelContract,
    *,
    max_batch_size: int = 32,
    max_queue_delay_us: int = 2000,
    instances: int = 1,
    kind: Literal["gpu", "cpu"] = "gpu",
    backend: str = "onnxruntime",
    accelerator: Literal["none", "tensorrt"] = "none",
    precision: Literal["fp32", "fp16"] = "fp32",
    trt_workspace_bytes: int = TRT_WORKSPACE_BYTES,
    trt_cache_dir: str = TRT_CACHE_DIR,
) -> mc.ModelConfig:
    """The Triton model configuration of an exported ACT policy.

    ``accelerator="tensorrt"``: the onnxruntime backend runs the graph through ONNX
    Runtime's TensorRT provider (CUDA for what TensorRT cannot take) at ``precision``.
    """
    config = mc.ModelConfig(name=contract.name, backend=backend, max_batch_size=max_batch_size)
    config.input.add(name=STATE_INPUT, data_type=mc.TYPE_FP32, dims=[contract.state_dim])
    for camera in contract.cameras:
        h, w = contract.image_sizes[camera]
        config.input.add(name=image_input(camera), data_type=mc.TYPE_UINT8, dims=[h, w, 3])
    config.output.add(
        name=ACTION_OUTPUT, data_type=mc.TYPE_FP32, dims=[contract.chunk_size, contract.action_dim]
    )
    preferred = [b for b in (1, 2, 4, 8, 16, 32, 64, 128) if 1 < b <= max_batch_size]
    config.dynamic_batching.preferred_batch_size.extend(preferred[-3:])
    config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    group = config.instance_group.add(count=instances)
    group.kind = mc.ModelInstanceGroup.KIND_GPU if kind == "gpu" else mc.ModelInstanceGroup.KIND_CPU
    for key, value in contract.to_parameters().items():
        config.parameters[key].string_value = value
    if accelerator == "tensorrt":
        add_tensorrt(config, precision, trt_workspace_bytes, f"{trt_cache_dir}/{contract.name}")
    return config


def add_tensorrt(config: mc.ModelConfig, precision: str, workspace_bytes: int,
                 cache_path: str) -> None:
    """The onnxruntime backend's TensorRT accelerator keys (its README's mapping table)."""
    trt = config.optimization.execution_accelerators.gpu_execution_accelerator.add(
        name="tensorrt")
    trt.parameters["precision_mode"] = precision.upper()
    trt.parameters["max_workspace_size_bytes"] = str(workspace_bytes)
    trt.parameters["trt_engine_cache_enable"] = "true"
    trt.parameters["trt_engine_cache_path"] = cache_path
    trt.parameters["trt_timing_cache_enable"] = "true"
    trt.parameters["trt_timing_cache_path"] = cache_path
    # One optimization profile over every batch size the batcher can form: without it
    # TensorRT builds a new engine whenever a larger batch arrives.
    top = max(config.max_batch_size, 1)
    opt = max([*config.dynamic_batching.preferred_batch_size, 1])
    for key, batch in (("min", 1), ("opt", opt), ("max", top)):
        trt.parameters[f"trt_profile_{key}_shapes"] = ",".join(
            f"{t.name}:{'x'.join(str(d) for d in [batch, *t.dims])}" for t in config.input)


def render_config(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_config(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


def contract_from_config(config: mc.ModelConfig, version: str | None = None) -> ModelContract:
    params = {k: v.string_value for k, v in config.parameters.items()}
    return ModelContract.from_parameters(config.name, params, version)
