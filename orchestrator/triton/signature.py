"""Input/output signature of a served model, and checking inputs against it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.triton.errors import BadInput


@dataclass(frozen=True)
class TensorSpec:
    dtype: np.dtype[Any]
    shape: tuple[int, ...]  # -1 = variable (the batch dimension)


@dataclass(frozen=True)
class ModelSignature:
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]


def check_inputs(
    name: str, signature: ModelSignature, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Validate against the model's metadata before anything is sent."""
    missing = sorted(set(signature.inputs) - set(inputs))
    extra = sorted(set(inputs) - set(signature.inputs))
    if missing or extra:
        raise BadInput(f"model {name!r}: missing inputs {missing}, unknown inputs {extra}")
    arrays: dict[str, np.ndarray] = {}
    batch: int | None = None
    for key, spec in signature.inputs.items():
        value = inputs[key]
        if not isinstance(value, np.ndarray):
            raise BadInput(f"model {name!r}: input {key!r} must be a numpy array")
        if value.dtype != spec.dtype:
            raise BadInput(f"model {name!r}: input {key!r} is {value.dtype}, expected {spec.dtype}")
        shape_ok = value.ndim == len(spec.shape) and all(
            want in (-1, got) for want, got in zip(spec.shape, value.shape, strict=True)
        )
        if not shape_ok:
            raise BadInput(
                f"model {name!r}: input {key!r} has shape {value.shape}, expected {spec.shape}"
            )
        if batch is not None and value.shape[0] != batch:
            raise BadInput(f"model {name!r}: inputs disagree on the batch size")
        batch = value.shape[0]
        arrays[key] = np.ascontiguousarray(value)
    return arrays
