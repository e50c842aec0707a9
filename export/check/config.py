"""Checks of one ``config.pbtxt`` on its own: the protobuf, the orchestrator's metadata,
the contract against the declared tensors, and the execution accelerator settings."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from orchestrator.triton.model_contract import (
    ACTION_OUTPUT,
    STATE_INPUT,
    ContractError,
    ModelContract,
    contract_from_config,
    image_input,
)

from .report import Report

# Everything ModelContract.from_parameters reads, plus what this check and the exporter's
# provenance promise (tests prove a config without any one of them fails).
REQUIRED_METADATA = ("policy_type", "cameras", "image_sizes", "state_names", "action_names",
                     "chunk_size", "n_action_steps", "fps", "onnx_sha256")
GPU_ACCELERATORS = {"tensorrt", "cuda"}
CPU_ACCELERATORS = {"openvino"}
PRECISIONS = {"FP32", "FP16", "INT8"}
_BOOLS = {"0", "1", "true", "false"}


def read_config(report: Report, model_dir: Path) -> mc.ModelConfig | None:
    """Parse as Triton does (text protobuf into ModelConfig); None after a problem."""
    name = model_dir.name
    path = model_dir / "config.pbtxt"
    try:
        config = text_format.Parse(path.read_text(), mc.ModelConfig())
    except (OSError, UnicodeDecodeError) as exc:
        report.add(name, "config", f"cannot read {path}: {exc}")
        return None
    except text_format.ParseError as exc:
        report.add(name, "config", f"config.pbtxt does not parse as a Triton ModelConfig: {exc}")
        return None
    if config.name and config.name != name:
        report.add(name, "config", f"config name {config.name!r} differs from the folder name "
                                   f"(Triton refuses the model)")
    if config.backend != "onnxruntime" and config.platform != "onnxruntime_onnx":
        report.add(name, "config", f"backend {config.backend or config.platform or '(none)'!r}: "
                                   "an exported ACT policy uses the onnxruntime backend")
    if config.max_batch_size < 0:
        report.add(name, "config", f"max_batch_size {config.max_batch_size} is negative")
    if config.HasField("dynamic_batching") and config.max_batch_size < 1:
        report.add(name, "config", "dynamic_batching needs max_batch_size >= 1")
    for pref in config.dynamic_batching.preferred_batch_size:
        if config.max_batch_size and pref > config.max_batch_size:
            report.add(name, "config", f"preferred batch size {pref} exceeds max_batch_size "
                                       f"{config.max_batch_size}")
    for tensor in (*config.input, *config.output):
        if tensor.data_type == mc.TYPE_INVALID:
            report.add(name, "config", f"tensor {tensor.name!r} has no data_type")
        if any(d == 0 or d < -1 for d in tensor.dims):
            report.add(name, "config", f"tensor {tensor.name!r} has invalid dims "
                                       f"{list(tensor.dims)}")
    return config


def check_metadata(report: Report, config: mc.ModelConfig, model: str) -> ModelContract | None:
    params = {k: v.string_value for k, v in config.parameters.items()}
    missing = [k for k in REQUIRED_METADATA if not params.get(k)]
    for key in missing:
        report.add(model, "metadata", f"parameter {key!r} is missing (the orchestrator or this "
                                      "check needs it; was the model written by python -m export?)")
    if params.get("policy_type", "act") != "act":
        report.add(model, "metadata", f"policy_type is {params['policy_type']!r}, not 'act'")
    if missing:
        return None
    try:
        contract = contract_from_config(config)
    except ContractError as exc:
        report.add(model, "metadata", str(exc))
        return None
    if contract.n_action_steps < 1 or contract.n_action_steps > contract.chunk_size:
        report.add(model, "metadata", f"n_action_steps {contract.n_action_steps} is outside "
                                      f"1..chunk_size ({contract.chunk_size})")
    if sorted(contract.image_sizes) != sorted(contract.cameras):
        report.add(model, "metadata", "image_sizes does not name exactly the cameras")
    raw_limits = params.get("joint_limits")
    if raw_limits:
        _check_limits(report, model, raw_limits, contract)
    return contract


def _check_limits(report: Report, model: str, raw: str, contract: ModelContract) -> None:
    try:
        table = json.loads(raw)
        bad = [k for k, (lo, hi) in table.items() if not float(lo) < float(hi)]
    except (ValueError, TypeError, AttributeError):
        report.add(model, "metadata", f"joint_limits is not {{joint: [low, high]}} JSON: {raw!r}")
        return
    unknown = sorted(set(table) - set(contract.action_names))
    if unknown:
        report.add(model, "metadata", f"joint_limits names unknown joints {unknown}")
    if bad:
        report.add(model, "metadata", f"joint_limits needs low < high for {bad}")


def check_contract_tensors(report: Report, config: mc.ModelConfig, contract: ModelContract
                           ) -> None:
    """The metadata must describe the tensors the config declares."""
    model = contract.name
    inputs = {t.name: t for t in config.input}
    outputs = {t.name: t for t in config.output}
    expected = {STATE_INPUT: ([contract.state_dim], mc.TYPE_FP32)}
    for cam in contract.cameras:
        h, w = contract.image_sizes[cam]
        expected[image_input(cam)] = ([h, w, 3], mc.TYPE_UINT8)
    for name, (dims, dtype) in expected.items():
        tensor = inputs.get(name)
        if tensor is None:
            report.add(model, "contract", f"the metadata needs input {name!r}, the config has "
                                          f"none (inputs: {sorted(inputs)})")
        elif list(tensor.dims) != dims or tensor.data_type != dtype:
            report.add(model, "contract", f"input {name!r} is {_describe(tensor)} in the config "
                                          f"but the metadata implies {mc.DataType.Name(dtype)} "
                                          f"{dims}")
    for name in sorted(set(inputs) - set(expected)):
        report.add(model, "contract", f"config input {name!r} is not in the metadata (cameras "
                                      f"{list(contract.cameras)})")
    action = outputs.get(ACTION_OUTPUT)
    dims = [contract.chunk_size, contract.action_dim]
    if action is None:
        report.add(model, "contract", f"the config has no {ACTION_OUTPUT!r} output")
    elif list(action.dims) != dims or action.data_type != mc.TYPE_FP32:
        report.add(model, "contract", f"output {ACTION_OUTPUT!r} is {_describe(action)} in the "
                                      f"config but the metadata implies TYPE_FP32 {dims} "
                                      "(chunk_size, action_names)")


def _describe(tensor: mc.ModelInput | mc.ModelOutput) -> str:
    return f"{mc.DataType.Name(tensor.data_type)} {list(tensor.dims)}"


def check_accelerators(report: Report, config: mc.ModelConfig, model: str
                       ) -> dict[str, str] | None:
    """The onnxruntime backend's execution accelerators; returns the TensorRT settings."""
    accel = config.optimization.execution_accelerators
    kinds = {g.kind for g in config.instance_group}
    trt: dict[str, str] | None = None
    for acc in accel.gpu_execution_accelerator:
        if acc.name not in GPU_ACCELERATORS:
            report.add(model, "accelerator", f"unknown gpu_execution_accelerator {acc.name!r} "
                                             f"(the onnxruntime backend knows "
                                             f"{sorted(GPU_ACCELERATORS)})")
        if acc.name != "tensorrt":
            continue
        trt = dict(acc.parameters)
        precision = trt.get("precision_mode", "FP32")
        if precision not in PRECISIONS:
            report.add(model, "accelerator", f"precision_mode {precision!r} is not one of "
                                             f"{sorted(PRECISIONS)}")
        workspace = trt.get("max_workspace_size_bytes", "1")
        if not workspace.isdigit() or int(workspace) < 1:
            report.add(model, "accelerator", f"max_workspace_size_bytes {workspace!r} is not a "
                                             "positive integer")
        for key in ("trt_engine_cache_enable", "trt_timing_cache_enable"):
            if key in trt and trt[key].lower() not in _BOOLS:
                report.add(model, "accelerator", f"{key} {trt[key]!r} is not true/false/1/0")
        if trt.get("trt_engine_cache_enable", "").lower() in ("1", "true") and not trt.get(
                "trt_engine_cache_path"):
            report.add(model, "accelerator", "trt_engine_cache_enable without "
                                             "trt_engine_cache_path")
        if kinds and mc.ModelInstanceGroup.KIND_GPU not in kinds:
            report.add(model, "accelerator", "a TensorRT accelerator on CPU-only instances is "
                                             "never used: keep instance_group KIND_GPU")
    for acc in accel.cpu_execution_accelerator:
        if acc.name not in CPU_ACCELERATORS:
            report.add(model, "accelerator", f"unknown cpu_execution_accelerator {acc.name!r}")
    return trt
