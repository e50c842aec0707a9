"""An exported model loads in the EXACT ONNX Runtime of the Triton container the compose file
pins (``.venv-ort``, built by ``make setup``) and gives the project's runtime's outputs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort

from export.check.graph import feeds
from export.check.versions import compose_triton, target
from orchestrator.triton.model_contract import parse_config
from tests.support.exports import REPO_ROOT, ExportedRepository

ORT_ENV = REPO_ROOT / ".venv-ort" / "bin" / "python"
# Same graph, same float32 CPU kernels up to the versions' differences.
TOLERANCE = 1e-4
RUN = """
import sys, numpy as np, onnxruntime as ort
inputs = dict(np.load(sys.argv[2]))
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
np.savez(sys.argv[3], version=np.array(ort.__version__),
         action=session.run(["action"], inputs)[0])
"""


def test_the_container_runtime_loads_the_export_and_agrees(
        exported_repository: ExportedRepository, tmp_path: Path) -> None:
    assert ORT_ENV.exists(), ".venv-ort is missing: `make setup` builds it"
    pinned = target(compose_triton(REPO_ROOT / "docker-compose.yml"))
    model_dir = exported_repository.repository / exported_repository.name
    config = parse_config((model_dir / "config.pbtxt").read_text())
    onnx_path = model_dir / "1" / "model.onnx"
    ours = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch, zeros in ((1, True), (3, False)):
        inputs = feeds(config, batch, zeros, seed=batch)
        np.savez(tmp_path / "in.npz", **inputs)  # type: ignore[arg-type]
        subprocess.run([str(ORT_ENV), "-c", RUN, str(onnx_path), str(tmp_path / "in.npz"),
                        str(tmp_path / "out.npz")], check=True, timeout=120)
        theirs = np.load(tmp_path / "out.npz")
        assert str(theirs["version"]) == pinned.onnxruntime  # the container's, exactly
        expected = ours.run(["action"], inputs)[0]
        assert theirs["action"].shape == expected.shape == (batch, 10, 6)
        err = float(np.max(np.abs(theirs["action"] - expected)))
        assert err <= TOLERANCE, (batch, err, pinned, ort.__version__)
