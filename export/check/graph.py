"""Checks of one served ``model.onnx`` against its config and the target container:
IR version and opsets, inputs/outputs/dims/types, the recorded hash, and real runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import model_config_pb2 as mc

from ..checkpoint import sha256_file
from .report import Report
from .versions import MIN_OPSET, Target

# ONNX TensorProto element types -> Triton data types (the onnxruntime backend's mapping).
ONNX_TO_TRITON = {
    1: mc.TYPE_FP32, 2: mc.TYPE_UINT8, 3: mc.TYPE_INT8, 4: mc.TYPE_UINT16, 5: mc.TYPE_INT16,
    6: mc.TYPE_INT32, 7: mc.TYPE_INT64, 8: mc.TYPE_STRING, 9: mc.TYPE_BOOL, 10: mc.TYPE_FP16,
    11: mc.TYPE_FP64, 12: mc.TYPE_UINT32, 13: mc.TYPE_UINT64, 16: mc.TYPE_BF16,
}  # fmt: skip
_NUMPY = {mc.TYPE_FP32: np.float32, mc.TYPE_UINT8: np.uint8, mc.TYPE_INT8: np.int8,
          mc.TYPE_INT32: np.int32, mc.TYPE_INT64: np.int64, mc.TYPE_FP16: np.float16,
          mc.TYPE_FP64: np.float64, mc.TYPE_BOOL: np.bool_}
# fp16 TensorRT against fp32 on CPU: actions are in robot units (about -100..100), so 1 %
# of the output's magnitude is far below what a joint can resolve and far above fp16 noise.
FP16_RELATIVE_TOLERANCE = 1e-2


def _dims(value_info: Any) -> list[int | None]:
    """ONNX shape as ints, None for a symbolic or unknown dimension."""
    return [d.dim_value if d.HasField("dim_value") else None
            for d in value_info.type.tensor_type.shape.dim]


def check_versions(report: Report, model: str, version: str, proto: Any, target: Target
                   ) -> dict[str, Any]:
    opsets = {(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import}
    facts: dict[str, Any] = {"ir_version": int(proto.ir_version), "opsets": opsets}
    if proto.ir_version > target.max_ir_version:
        report.add(model, "ir_version", f"IR version {proto.ir_version} is newer than "
                                        f"{target.describe()} loads", version)
    onnx_opset = opsets.get("ai.onnx")
    if onnx_opset is None:
        report.add(model, "opset", "the graph imports no ai.onnx opset", version)
    elif not MIN_OPSET <= onnx_opset <= target.max_opset:
        report.add(model, "opset", f"ai.onnx opset {onnx_opset} is outside what "
                                   f"{target.describe()} loads", version)
    return facts


def check_io(report: Report, model: str, version: str, proto: Any, config: mc.ModelConfig
             ) -> None:
    """As the onnxruntime backend validates a config against the graph at load."""
    initializers = {t.name for t in proto.graph.initializer}
    graph_inputs = {v.name: v for v in proto.graph.input if v.name not in initializers}
    graph_outputs = {v.name: v for v in proto.graph.output}
    batching = config.max_batch_size > 0
    for kind, tensors, graph in (("input", config.input, graph_inputs),
                                 ("output", config.output, graph_outputs)):
        for tensor in tensors:
            info = graph.get(tensor.name)
            if info is None:
                report.add(model, "io", f"config {kind} {tensor.name!r} is not a graph {kind} "
                                        f"(graph has {sorted(graph)})", version)
                continue
            _compare(report, model, version, kind, tensor, info, batching)
    for name in sorted(set(graph_inputs) - {t.name for t in config.input}):
        report.add(model, "io", f"graph input {name!r} is missing from the config (the "
                                "onnxruntime backend refuses the model)", version)


def _compare(report: Report, model: str, version: str, kind: str,
             tensor: mc.ModelInput | mc.ModelOutput, info: Any, batching: bool) -> None:
    elem = info.type.tensor_type.elem_type
    if ONNX_TO_TRITON.get(elem) != tensor.data_type:
        graph_type = mc.DataType.Name(ONNX_TO_TRITON[elem]) if elem in ONNX_TO_TRITON else elem
        report.add(model, "io", f"{kind} {tensor.name!r} is {mc.DataType.Name(tensor.data_type)} "
                                f"in the config but {graph_type} in the graph", version)
    shape = _dims(info)
    if batching:
        if not shape or shape[0] is not None:
            report.add(model, "io", f"{kind} {tensor.name!r}: max_batch_size > 0 needs a "
                                    f"dynamic first dimension, the graph has {shape}", version)
            return
        shape = shape[1:]
    config_dims = list(tensor.dims)
    if len(shape) != len(config_dims) or any(
            g is not None and g != c for g, c in zip(shape, config_dims, strict=False)):
        shown = ["?" if d is None else d for d in shape]
        report.add(model, "io", f"{kind} {tensor.name!r} has dims {config_dims} in the config "
                                f"but {shown} in the graph (batch dimension excluded)", version)


def check_hash(report: Report, model: str, versions: dict[str, Path], recorded: str) -> None:
    """The config records the sha256 of the graph it was written with (its newest export)."""
    if not recorded:
        return
    hashes = {v: sha256_file(p) for v, p in versions.items()}
    if recorded not in hashes.values():
        newest = max(versions, key=int)
        report.add(model, "hash", f"no served model.onnx has the recorded onnx_sha256 "
                                  f"{recorded[:12]}...; version {newest} is "
                                  f"{hashes[newest][:12]}... (changed after export?)")


def feeds(config: mc.ModelConfig, batch: int, zeros: bool, seed: int = 0
          ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for tensor in config.input:
        dtype = _NUMPY.get(tensor.data_type, np.float32)
        shape = ([batch] if config.max_batch_size > 0 else []) + [max(d, 1) for d in tensor.dims]
        if zeros:
            out[tensor.name] = np.zeros(shape, dtype)
        elif dtype == np.uint8:
            out[tensor.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        else:
            out[tensor.name] = rng.standard_normal(shape).astype(dtype)
    return out


def check_runs(report: Report, model: str, version: str, path: Path, config: mc.ModelConfig
               ) -> dict[str, Any]:
    """Zeros and random inputs through ONNX Runtime (CPU): shapes as declared, all finite."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types
        report.add(model, "run", f"ONNX Runtime {ort.__version__} cannot load the graph: "
                                 f"{str(exc).splitlines()[0]}", version)
        return {}
    names = [o.name for o in config.output]
    batches = [1, min(2, config.max_batch_size)] if config.max_batch_size > 0 else [0]
    runs = []
    for batch in dict.fromkeys(batches):
        for zeros in (True, False):
            what = f"{'zero' if zeros else 'random'} inputs at batch {batch}"
            try:
                outputs = session.run(names, feeds(config, batch, zeros, seed=batch))
            except Exception as exc:
                report.add(model, "run", f"{what}: {str(exc).splitlines()[0]}", version)
                continue
            for tensor, out in zip(config.output, outputs, strict=True):
                expected = ([batch] if batch else []) + list(tensor.dims)
                arr = np.asarray(out)
                if list(arr.shape) != expected and -1 not in tensor.dims:
                    report.add(model, "run", f"{what}: output {tensor.name!r} has shape "
                                             f"{list(arr.shape)}, expected {expected}", version)
                bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                if bad:
                    report.add(model, "nonfinite", f"{what}: output {tensor.name!r} has {bad} "
                                                   f"NaN/inf of {arr.size} values", version)
            runs.append(what)
    return {"runs": runs}


def fp16_parity(report: Report, model: str, version: str, path: Path, config: mc.ModelConfig
                ) -> str:
    """TensorRT fp16 against fp32 CPU where a GPU with TensorRT is present; else a note."""
    import onnxruntime as ort

    rule = (f"max abs error <= {FP16_RELATIVE_TOLERANCE:g} x max(1, max |fp32 output|) on "
            "random inputs")
    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        return (f"{model}/{version}: fp16 parity NOT checked: no GPU with ONNX Runtime's "
                f"TensorRT provider here; on a GPU it fails above {rule}")
    names = [o.name for o in config.output]
    inputs = feeds(config, 1, zeros=False, seed=7)
    cpu = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    trt = ort.InferenceSession(str(path), providers=[
        ("TensorrtExecutionProvider", {"trt_fp16_enable": True}), "CUDAExecutionProvider"])
    if trt.get_providers()[0] != "TensorrtExecutionProvider":
        # Listed but not loaded (onnxruntime-gpu lists it without the TensorRT libraries):
        # ONNX Runtime fell back to fp32 on CUDA or the CPU, and fp32 would be compared
        # with itself.
        return (f"{model}/{version}: fp16 parity NOT checked: ONNX Runtime's TensorRT "
                f"provider did not load here (ran on {trt.get_providers()[0]}); on a GPU "
                f"with TensorRT it fails above {rule}")
    ref = np.asarray(cpu.run(names, inputs)[0], np.float64)
    got = np.asarray(trt.run(names, inputs)[0], np.float64)
    err = float(np.max(np.abs(ref - got)))
    bound = FP16_RELATIVE_TOLERANCE * max(1.0, float(np.max(np.abs(ref))))
    if not err <= bound:
        report.add(model, "fp16", f"TensorRT fp16 differs from fp32 by {err:.3g} > {bound:.3g} "
                                  f"({rule})", version)
    return f"{model}/{version}: fp16 parity max abs error {err:.3g} (bound {bound:.3g}: {rule})"
