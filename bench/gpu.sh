#!/usr/bin/env bash
# The prepared GPU run (issue 14) on a fresh GPU machine: an NVIDIA driver, Python >= 3.12,
# make and the package registries. Sets up what it needs, then measures within 8 minutes:
#   bench/gpu.sh [--tensorrt] [flags of python -m bench.gpu]     -> bench/results/gpu/
# --tensorrt also installs TensorRT's libraries (pip, ~2 GB) so the TensorRT fp16 rows run;
# without them those rows say why they did not.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi -L || { echo "bench/gpu.sh: no NVIDIA GPU here (nvidia-smi -L failed)" >&2; exit 1; }

# On a GPU machine the Makefile gives .venv-triton onnxruntime-gpu (CUDA, cuDNN as wheels).
make setup
TRITON_PY=.venv-triton/bin/python
has_cuda='import sys, onnxruntime as o; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())'
if ! "$TRITON_PY" -c "$has_cuda"; then
  # An environment built before this machine had a GPU: swap the runtime now.
  "$TRITON_PY" -m pip uninstall -q -y onnxruntime onnxruntime-gpu || true
  "$TRITON_PY" -m pip install -q "onnxruntime-gpu[cuda,cudnn]" "numpy>=1.26,<2"
fi
"$TRITON_PY" -c "$has_cuda" || { echo "bench/gpu.sh: onnxruntime has no CUDA provider" >&2; exit 1; }

if [ "${1:-}" = "--tensorrt" ]; then
  shift
  if "$TRITON_PY" -m pip install -q tensorrt-cu12-libs; then
    # ONNX Runtime's TensorRT provider dlopens libnvinfer from the library path.
    trt_libs=$("$TRITON_PY" -c 'import os, tensorrt_libs; print(os.path.dirname(tensorrt_libs.__file__))')
    export LD_LIBRARY_PATH="$trt_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    echo "bench/gpu.sh: TensorRT libraries not installed; its rows will say why" >&2
  fi
fi

# The bench keeps to its own budget (--budget, 480 s); the timeout is a backstop.
PYTHONUNBUFFERED=1 timeout 900 .venv/bin/python -m bench.gpu "$@"
