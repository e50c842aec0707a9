"""``python -m export.check``: a good exported repository passes; each defect a stock Triton
or the orchestrator would trip on fails with its own line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.check import check_repository
from export.check.config import REQUIRED_METADATA
from export.check.graph import sha256_file
from export.check.versions import DEFAULT_TRITON
from orchestrator.triton.model_contract import parse_config, render_config
from tests.support.exports import REPO_ROOT, ExportedRepository


@pytest.fixture
def repo(exported_repository: ExportedRepository, tmp_path: Path) -> Path:
    """A private copy (real copies: the defects below rewrite files in place)."""
    return Path(shutil.copytree(exported_repository.repository, tmp_path / "repository"))


def model_dir(repo: Path) -> Path:
    return repo / "tiny_act"


def edit_config(repo: Path, change: Callable[..., None]) -> None:
    path = model_dir(repo) / "config.pbtxt"
    config = parse_config(path.read_text())
    change(config)
    path.write_text(render_config(config))


def replace_graph(repo: Path, model: onnx.ModelProto) -> None:
    """Write a new model.onnx and record its hash, as an export would."""
    path = model_dir(repo) / "1" / "model.onnx"
    onnx.save(model, str(path))
    edit_config(repo, lambda c: c.parameters["onnx_sha256"].__setattr__(
        "string_value", sha256_file(path)))


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "export.check", *map(str, args)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ}, check=False)


def lines_of(repo: Path, triton: str = DEFAULT_TRITON, run: bool = True) -> list[str]:
    return check_repository(repo, triton, run=run).lines()


def stand_in_act(nan: bool) -> onnx.ModelProto:
    """A graph with the tiny ACT's inputs and output ([B,6], [B,48,64,3] -> [B,10,6]);
    ``nan``: sqrt(-(|x| + 1)) on the way, NaN for every input."""
    state = helper.make_tensor_value_info("observation.state", TensorProto.FLOAT, ["batch", 6])
    image = helper.make_tensor_value_info("observation.images.front", TensorProto.UINT8,
                                          ["batch", 48, 64, 3])
    action = helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", 10, 6])
    consts = {"axes1": [1], "axes2": [2], "shape": [1, 10, 6]}
    inits = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in consts.items()]
    inits.append(numpy_helper.from_array(np.array([1.0], np.float32), "one"))
    nodes = [
        helper.make_node("ReduceSum", ["observation.state", "axes1"], ["s"], keepdims=1),
        helper.make_node("Cast", ["observation.images.front"], ["img"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["img"], ["m"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axes1"], ["m1"]),
        helper.make_node("Add", ["s", "m1"], ["t"]),
        helper.make_node("Abs", ["t"], ["a"]),
        helper.make_node("Add", ["a", "one"], ["p"]),
    ]
    if nan:
        nodes += [helper.make_node("Neg", ["p"], ["n"]), helper.make_node("Sqrt", ["n"], ["r"])]
    else:
        nodes += [helper.make_node("Sqrt", ["p"], ["r"])]
    nodes += [helper.make_node("Unsqueeze", ["r", "axes2"], ["r3"]),
              helper.make_node("Expand", ["r3", "shape"], ["action"])]
    graph = helper.make_graph(nodes, "stand_in", [state, image], [action], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_a_good_exported_repository_passes(repo: Path) -> None:
    result = run_cli(repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK: 1 model(s), 1 served version(s)"), result.stdout
    assert "Triton 26.07 (ONNX Runtime 1.27.0" in result.stdout
    report = json.loads(run_cli(repo, "--json", "--triton", "24.10").stdout)
    assert report["ok"] and report["problems"] == []
    assert report["target"] == {"triton": "24.10", "onnxruntime": "1.19.2",
                                "max_ir_version": 10, "max_opset": 21}
    graph = report["models"][0]["graphs"]["1"]
    assert graph["opsets"]["ai.onnx"] == 17 and len(graph["runs"]) == 4


def test_a_broken_config_fails_with_its_line(repo: Path) -> None:
    (model_dir(repo) / "config.pbtxt").write_text('name: "tiny_act"\nmax_batch_size: [oops\n')
    result = run_cli(repo)
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(
        "tiny_act: config: config.pbtxt does not parse as a Triton ModelConfig"), result.stdout
    assert result.stdout.splitlines()[-1].startswith("FAILED (1 problem(s))")


def test_dims_that_disagree_with_the_graph_fail(repo: Path) -> None:
    edit_config(repo, lambda c: c.input[0].dims.__setitem__(0, 7))
    lines = lines_of(repo, run=False)
    assert ("tiny_act/1: io: input 'observation.state' has dims [7] in the config but [6] in "
            "the graph (batch dimension excluded)") in lines, lines
    # The orchestrator's metadata (6 joint names) disagrees with the config too.
    assert any(x.startswith("tiny_act: contract: input 'observation.state' is TYPE_FP32 [7]")
               for x in lines), lines


def test_a_graph_without_a_dynamic_batch_dimension_fails(repo: Path) -> None:
    model = onnx.load(str(model_dir(repo) / "1" / "model.onnx"))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    replace_graph(repo, model)
    lines = lines_of(repo, run=False)
    assert any("input 'observation.state': max_batch_size > 0 needs a dynamic first "
               "dimension" in x for x in lines), lines


def test_an_ir_version_too_new_for_the_target_fails(repo: Path) -> None:
    model = onnx.load(str(model_dir(repo) / "1" / "model.onnx"))
    model.ir_version = 11
    replace_graph(repo, model)
    assert lines_of(repo, "26.07") == []  # ONNX Runtime 1.27 loads IR 11
    lines = lines_of(repo, "24.10")
    assert lines == ["tiny_act/1: ir_version: IR version 11 is newer than Triton 24.10 (ONNX "
                     "Runtime 1.19.2: IR <= 10, opset 7..21) loads"], lines


def test_an_opset_too_new_for_the_target_fails(repo: Path) -> None:
    model = onnx.load(str(model_dir(repo) / "1" / "model.onnx"))
    model.opset_import[0].version = 23
    replace_graph(repo, model)
    lines = lines_of(repo, "25.05", run=False)
    assert lines == ["tiny_act/1: opset: ai.onnx opset 23 is outside what Triton 25.05 (ONNX "
                     "Runtime 1.22.0: IR <= 10, opset 7..22) loads"], lines


@pytest.mark.parametrize("key", REQUIRED_METADATA)
def test_each_missing_metadata_key_fails_with_its_line(repo: Path, key: str) -> None:
    edit_config(repo, lambda c: c.parameters.pop(key))
    lines = lines_of(repo, run=False)
    assert f"tiny_act: metadata: parameter {key!r} is missing" in " | ".join(lines), lines


def test_malformed_metadata_fails(repo: Path) -> None:
    edit_config(repo, lambda c: c.parameters["joint_limits"].__setattr__(
        "string_value", '{"elbow": [0, 1], "gripper.pos": [5, 1]}'))
    lines = lines_of(repo, run=False)
    assert "tiny_act: metadata: joint_limits names unknown joints ['elbow']" in lines
    assert "tiny_act: metadata: joint_limits needs low < high for ['gripper.pos']" in lines


def test_a_file_changed_after_export_fails(repo: Path) -> None:
    path = model_dir(repo) / "1" / "model.onnx"
    model = onnx.load(str(path))
    weight = model.graph.initializer[0]
    array = numpy_helper.to_array(weight).copy()
    array.flat[0] += 1
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save(model, str(path))
    lines = lines_of(repo)
    assert len(lines) == 1 and lines[0].startswith(
        "tiny_act: hash: no served model.onnx has the recorded onnx_sha256"), lines


def test_a_graph_producing_nan_fails_and_its_healthy_twin_passes(repo: Path) -> None:
    replace_graph(repo, stand_in_act(nan=False))
    assert lines_of(repo) == []
    replace_graph(repo, stand_in_act(nan=True))
    lines = lines_of(repo)
    assert "tiny_act/1: nonfinite: zero inputs at batch 1: output 'action' has 60 NaN/inf of " \
           "60 values" in lines, lines
    assert all(": nonfinite: " in x for x in lines), lines


def test_a_missing_version_file_and_unknown_target_are_reported(repo: Path) -> None:
    (model_dir(repo) / "1" / "model.onnx").unlink()
    lines = lines_of(repo)
    assert "tiny_act/1: version: no model.onnx in version folder 1 (Triton fails to load " \
           "it)" in lines, lines
    result = run_cli(repo, "--triton", "19.01")
    assert result.returncode == 2 and "unknown Triton release '19.01'" in result.stderr


def test_the_default_target_is_the_container_the_compose_file_pins() -> None:
    from export.check.versions import ORT_LIMITS, TRITON_ORT, compose_triton, main, target

    assert compose_triton(REPO_ROOT / "docker-compose.yml") == DEFAULT_TRITON
    assert target(DEFAULT_TRITON).onnxruntime == "1.27.0"
    assert target("24.10-py3").onnxruntime == "1.19.2"
    assert {".".join(v.split(".")[:2]) for v in TRITON_ORT.values()} <= set(ORT_LIMITS)
    # What the Makefile runs (standard library only) to pin .venv-ort.
    out = subprocess.run([sys.executable, "export/check/versions.py", "--compose",
                          "docker-compose.yml"], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True, env={"PATH": os.environ["PATH"]})
    assert out.stdout == "1.27.0\n"
    assert main(["--triton", "nope"]) == 2
