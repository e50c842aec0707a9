"""Which ONNX Runtime execution providers the local Triton's python-backend models use.

On a GPU machine (``make setup`` installs ``onnxruntime-gpu`` into ``.venv-triton`` there)
the derived models run on CUDA; everywhere else on CPU. The choice is a pure function of
what was detected, so it is tested without a GPU; detection is the thin I/O beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# Passed to the python-backend model (python_model.py reads it; it imports nothing of ours).
PROVIDERS_ENV = "LOCAL_TRITON_ORT_PROVIDERS"
Request = Literal["auto", "cpu", "cuda"]


class ProviderError(ValueError):
    """The requested execution provider cannot run on this machine."""


@dataclass(frozen=True)
class ProviderChoice:
    providers: tuple[str, ...]  # in priority order, CPU always last as the fallback
    device: Literal["gpu", "cpu"]
    reason: str


def choose_providers(gpu_present: bool, available: Sequence[str], request: Request = "auto"
                     ) -> ProviderChoice:
    """``available``: what the Triton env's onnxruntime reports (get_available_providers)."""
    has_cuda = CUDA in available
    if request == "cpu":
        return ProviderChoice((CPU,), "cpu", "CPU requested")
    if gpu_present and has_cuda:
        return ProviderChoice((CUDA, CPU), "gpu", "a GPU is present and onnxruntime has "
                                                   "the CUDA provider")
    if request == "cuda":
        raise ProviderError(
            "CUDA requested but " + ("no GPU was found (nvidia-smi -L, /dev/nvidia0)"
                                     if not gpu_present else
                                     "the Triton environment's onnxruntime has no CUDA "
                                     "provider (run `make setup` on this machine: it installs "
                                     "onnxruntime-gpu when a GPU is present)"))
    if gpu_present:
        return ProviderChoice((CPU,), "cpu", "a GPU is present but the Triton environment's "
                                             "onnxruntime has no CUDA provider (run `make "
                                             "setup` here to install onnxruntime-gpu)")
    return ProviderChoice((CPU,), "cpu", "no GPU on this machine")


def gpu_present() -> bool:
    """An NVIDIA driver answers (``nvidia-smi -L``) or a device node exists."""
    if Path("/dev/nvidia0").exists():
        return True
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return False
    try:
        return subprocess.run([tool, "-L"], capture_output=True, timeout=20,
                              check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def available_providers(python: Path) -> list[str]:
    """What onnxruntime reports inside the Triton environment (its own interpreter)."""
    probe = "import json, onnxruntime; print(json.dumps(onnxruntime.get_available_providers()))"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                             timeout=60, check=True, env=env).stdout
        return [str(p) for p in json.loads(out.strip().splitlines()[-1])]
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return [CPU]


def detect(python: Path, request: Request = "auto") -> ProviderChoice:
    gpu = gpu_present() if request != "cpu" else False
    return choose_providers(gpu, available_providers(python) if gpu else [CPU], request)
