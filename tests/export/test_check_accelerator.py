"""``--accelerator tensorrt --precision fp16``: the onnxruntime backend's TensorRT settings in
config.pbtxt (read back with the real ModelConfig protobuf), GPU instances, and the fp16
parity that only a GPU can check (said, with its tolerance, on this CPU machine)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.check import check_repository
from export.check.config import check_accelerators
from export.check.report import Report
from export.check.versions import target
from orchestrator.triton.local_repository import python_backend_config
from orchestrator.triton.model_contract import (
    TRT_CACHE_DIR,
    build_model_config,
    contract_from_config,
    parse_config,
    render_config,
)
from tests.support.exports import ExportedRepository, run_export_cli, snapshot_tree

HAS_TENSORRT = "TensorrtExecutionProvider" in ort.get_available_providers()


def trt_params(config: mc.ModelConfig) -> dict[str, str]:
    accs = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accs] == ["tensorrt"]
    return dict(accs[0].parameters)


def test_tensorrt_fp16_settings_round_trip_through_the_protobuf(
        exported_repository: ExportedRepository) -> None:
    contract = exported_repository.result.contract
    text = render_config(build_model_config(contract, max_batch_size=64, accelerator="tensorrt",
                                            precision="fp16"))
    config = text_format.Parse(text, mc.ModelConfig())
    params = trt_params(config)
    assert params["precision_mode"] == "FP16"
    assert params["max_workspace_size_bytes"] == str(1 << 30)
    assert params["trt_engine_cache_enable"] == "true"
    assert params["trt_engine_cache_path"] == f"{TRT_CACHE_DIR}/{contract.name}"
    assert params["trt_profile_min_shapes"] == \
        "observation.state:1x6,observation.images.front:1x48x64x3"
    assert params["trt_profile_max_shapes"] == \
        "observation.state:64x6,observation.images.front:64x48x64x3"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    report = Report("x", target("26.07"), "")
    assert check_accelerators(report, config, contract.name) == params and report.ok
    # The orchestrator still reads the same contract; the local python-backend copy drops
    # the accelerator (it runs ONNX Runtime itself).
    assert contract_from_config(config).to_parameters() == contract.to_parameters()
    assert not python_backend_config(config).HasField("optimization")
    plain = build_model_config(contract)
    assert not plain.HasField("optimization")


def test_the_check_refuses_bad_accelerator_settings(
        exported_repository: ExportedRepository) -> None:
    config = build_model_config(exported_repository.result.contract, kind="cpu",
                                accelerator="tensorrt")
    accs = config.optimization.execution_accelerators
    accs.gpu_execution_accelerator[0].parameters["precision_mode"] = "FP8"
    accs.gpu_execution_accelerator.add(name="tensorrtx")
    report = Report("x", target("26.07"), "")
    check_accelerators(report, config, "m")
    assert report.lines() == [
        "m: accelerator: precision_mode 'FP8' is not one of ['FP16', 'FP32', 'INT8']",
        "m: accelerator: a TensorRT accelerator on CPU-only instances is never used: keep "
        "instance_group KIND_GPU",
        "m: accelerator: unknown gpu_execution_accelerator 'tensorrtx' (the onnxruntime "
        "backend knows ['cuda', 'tensorrt'])",
    ]


def test_export_cli_writes_tensorrt_fp16_and_says_what_parity_it_checked(
        exported_repository: ExportedRepository, tmp_path: Path) -> None:
    built = exported_repository.checkpoint
    repo = tmp_path / "repo"
    result = run_export_cli(built.path, "--repository", repo, "--name", "trt_act",
                            "--dataset-info", built.dataset_info, "--accelerator", "tensorrt",
                            "--precision", "fp16")
    assert result.returncode == 0, result.stderr
    config = parse_config((repo / "trt_act" / "config.pbtxt").read_text())
    assert trt_params(config)["precision_mode"] == "FP16"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    tolerance = "max abs error <= 0.01 x max(1, max |fp32 output|) on random inputs"
    if HAS_TENSORRT:  # a GPU machine: the parity ran
        assert "fp16 parity max abs error" in result.stdout
    else:
        assert f"fp16 parity NOT checked: no GPU with ONNX Runtime's TensorRT provider here; " \
               f"on a GPU it fails above {tolerance}" in result.stdout, result.stdout
    report = check_repository(repo)
    assert report.ok, report.lines()
    assert any("fp16 parity" in n and tolerance in n for n in report.notes), report.notes


def test_inconsistent_accelerator_flags_are_refused_and_write_nothing(
        exported_repository: ExportedRepository, tmp_path: Path) -> None:
    built = exported_repository.checkpoint
    repo = tmp_path / "repo"
    repo.mkdir()
    before = snapshot_tree(tmp_path)
    for flags, message in (
        (["--precision", "fp16"], "--precision fp16 needs --accelerator tensorrt"),
        (["--accelerator", "tensorrt", "--kind", "cpu"], "--accelerator tensorrt needs --kind "
                                                         "gpu"),
    ):
        result = run_export_cli(built.path, "--repository", repo, "--name", "x", *flags)
        assert result.returncode == 1 and message in result.stderr, result.stderr
    assert snapshot_tree(tmp_path) == before


def test_fp16_parity_is_not_claimed_when_tensorrt_did_not_load(
        exported_repository: ExportedRepository, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu lists the TensorRT provider even without the TensorRT libraries;
    ONNX Runtime then runs on CUDA or the CPU, in fp32, and the check compared fp32 with
    itself: "fp16 parity max abs error 0". The listing is what is faked here (this machine
    has the CPU wheel only); the session that falls back is real."""
    from export.check.graph import fp16_parity

    listed = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: listed)
    model = exported_repository.repository / exported_repository.name
    config = parse_config((model / "config.pbtxt").read_text())
    report = Report(str(exported_repository.repository), target("24.10"), "")
    note = fp16_parity(report, exported_repository.name, "1", model / "1" / "model.onnx", config)
    assert "fp16 parity NOT checked" in note and "did not load" in note, note
    assert not report.problems
