# Everything starts from a Python >= 3.12 interpreter, found by tools/find-python.sh
# (override with PYTHON=/path/to/python3.12). Targets are idempotent.
PYTHON ?= $(shell tools/find-python.sh)
VENV := .venv
TRITON_VENV := .venv-triton
# The exact ONNX Runtime of the Triton container docker-compose.yml pins (a test compares it
# with the project's); read with the standard library only.
ORT_VENV := .venv-ort
# A GPU machine (a driver answers or a device node exists): the local Triton gets
# onnxruntime-gpu, and picks its CUDA provider at start (orchestrator/triton/providers.py).
GPU ?= $(shell (nvidia-smi -L >/dev/null 2>&1 || test -e /dev/nvidia0) && echo 1)
PY := $(VENV)/bin/python
PIP_FLAGS ?= --disable-pip-version-check -q

.PHONY: all setup run demo test lint openapi bench clean

all: setup

setup: $(VENV)/.stamp $(TRITON_VENV)/.stamp $(ORT_VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	@test -n "$(PYTHON)" || { echo "no Python >= 3.12 found (set PYTHON=)"; exit 1; }
	@test -x $(VENV)/bin/pip || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e '.[export,dev]'
	@touch $@

$(TRITON_VENV)/.stamp: orchestrator/triton/server-requirements.txt
	@test -n "$(PYTHON)" || { echo "no Python >= 3.12 found (set PYTHON=)"; exit 1; }
	@test -x $(TRITON_VENV)/bin/pip || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(TRITON_VENV)/bin/python -m pip install $(PIP_FLAGS) -r orchestrator/triton/server-requirements.txt
	@if [ -n "$(GPU)" ]; then \
	  $(TRITON_VENV)/bin/python -m pip uninstall $(PIP_FLAGS) -y onnxruntime onnxruntime-gpu; \
	  $(TRITON_VENV)/bin/python -m pip install $(PIP_FLAGS) "onnxruntime-gpu[cuda,cudnn]" \
	    "numpy>=1.26,<2"; fi
	@touch $@

$(ORT_VENV)/.stamp: docker-compose.yml export/check/versions.py
	@test -n "$(PYTHON)" || { echo "no Python >= 3.12 found (set PYTHON=)"; exit 1; }
	@test -x $(ORT_VENV)/bin/pip || $(PYTHON) -m venv $(ORT_VENV)
	$(ORT_VENV)/bin/python -m pip install $(PIP_FLAGS) \
	  "onnxruntime==$$($(PYTHON) export/check/versions.py --compose docker-compose.yml)"
	@touch $@

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check orchestrator local_stack export arena_server sim_robot tests bench tools
	$(VENV)/bin/mypy

# The README's test command: set up, lint, then every test against real servers.
# The fleet tests run in a pytest process of their own: a Ray driver is per-process state
# (one ray.init per process), and ray.init forks its daemons from a process that, after
# the rest of the suite, holds many threads' state (see tests/fleet/test_ray_after_video.py
# for the hang that caused, now fixed).
test: setup lint
	$(VENV)/bin/pytest -q --ignore=tests/fleet $(PYTEST_ARGS)
	$(VENV)/bin/pytest -q tests/fleet $(PYTEST_ARGS)

# The README's run command: the whole stack on local defaults.
# Not the ONNX Runtime of the compose Triton (.venv-ort): only a test checks against it.
run: $(VENV)/.stamp $(TRITON_VENV)/.stamp
	$(PY) -m local_stack $(ARGS)

demo: $(VENV)/.stamp $(TRITON_VENV)/.stamp
	$(PY) -m local_stack --demo true $(ARGS)

openapi: $(VENV)/.stamp
	$(PY) -m orchestrator.api.openapi_dump openapi.json

bench: setup
	$(PY) -m bench $(ARGS)

clean:
	rm -rf $(VENV) $(TRITON_VENV) $(ORT_VENV) .pytest_cache .mypy_cache .ruff_cache
