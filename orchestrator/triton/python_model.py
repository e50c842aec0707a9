"""Triton python-backend model that serves an ONNX graph with ONNX Runtime.

The local launcher copies this file verbatim as ``model.py`` next to a
``model.onnx`` in the derived repository. It runs inside the Triton server's
own environment (``.venv-triton``: numpy<2, onnxruntime), never in the
orchestrator, so it imports nothing from this project.

The python backend hands ``execute`` the whole dynamic batch as a list of
requests; it does not merge them. We concatenate every input along the batch
axis, run the graph once and split the outputs back, which is what the
onnxruntime backend does in production.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

ONNX_FILE = "model.onnx"
# Threads per ONNX Runtime session; the launcher passes it through the server's environment.
THREADS_ENV = "LOCAL_TRITON_ORT_THREADS"
# Execution providers in priority order, chosen by the launcher (orchestrator/triton/providers.py).
PROVIDERS_ENV = "LOCAL_TRITON_ORT_PROVIDERS"


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.batching = int(config.get("max_batch_size", 0)) > 0
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.output_dtypes = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]
        }
        path = os.path.join(args["model_repository"], args["model_version"], ONNX_FILE)
        options = ort.SessionOptions()
        threads = int(os.environ.get(THREADS_ENV, "0") or 0)
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = [p for p in os.environ.get(PROVIDERS_ENV, "").split(",") if p]
        if "CUDAExecutionProvider" in providers and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels onnxruntime-gpu pulls in
        self.session = ort.InferenceSession(
            path, options, providers=providers or ["CPUExecutionProvider"])
        logger = getattr(pb_utils, "Logger", None)
        if logger is not None:
            logger.log_info(f"{args['model_name']}: onnxruntime {ort.__version__} providers "
                            f"{self.session.get_providers()}")
        graph_inputs = {i.name for i in self.session.get_inputs()}
        graph_outputs = {o.name for o in self.session.get_outputs()}
        missing = [n for n in self.input_names if n not in graph_inputs]
        missing += [n for n in self.output_names if n not in graph_outputs]
        if missing:
            raise pb_utils.TritonModelException(
                f"{path}: config names {missing} are not inputs/outputs of the ONNX graph"
            )

    def execute(self, requests: list[Any]) -> list[Any]:
        # Without batching every request is its own graph run.
        groups = [requests] if self.batching else [[r] for r in requests]
        responses: list[Any] = []
        for group in groups:
            try:
                responses.extend(self._run(group))
            except Exception as exc:  # one bad run must not take the model down
                error = pb_utils.TritonError(f"onnxruntime failed: {exc}")
                responses.extend(
                    pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in group
                )
        return responses

    def _run(self, requests: list[Any]) -> list[Any]:
        per_request = [
            [pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.input_names]
            for r in requests
        ]
        if len(per_request) == 1:
            outputs = self.session.run(
                self.output_names, dict(zip(self.input_names, per_request[0], strict=True))
            )
            split = [[out] for out in outputs]
        else:
            feeds = {
                name: np.concatenate([arrays[i] for arrays in per_request], axis=0)
                for i, name in enumerate(self.input_names)
            }
            outputs = self.session.run(self.output_names, feeds)
            bounds = np.cumsum([arrays[0].shape[0] for arrays in per_request])[:-1]
            split = [np.split(out, bounds, axis=0) for out in outputs]
        responses = []
        for k in range(len(requests)):
            tensors = [
                pb_utils.Tensor(
                    name, np.ascontiguousarray(split[j][k], dtype=self.output_dtypes[name])
                )
                for j, name in enumerate(self.output_names)
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def finalize(self) -> None:
        self.session = None
