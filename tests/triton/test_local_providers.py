"""The local Triton picks ONNX Runtime's CUDA provider on a GPU machine and CPU elsewhere:
the choice (a pure function, property-tested), and a real server that reports it and whose
python-backend model really runs with it (the model logs its session's providers)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.triton.launcher import LocalTriton
from orchestrator.triton.providers import (
    CPU,
    CUDA,
    ProviderError,
    available_providers,
    choose_providers,
    gpu_present,
)
from tests.support.triton import tiny_contract, write_tiny_model

OTHERS = ["AzureExecutionProvider", "TensorrtExecutionProvider", "OpenVINOExecutionProvider"]


@given(gpu=st.booleans(), available=st.lists(st.sampled_from([CUDA, CPU, *OTHERS]), unique=True),
       request=st.sampled_from(["auto", "cpu", "cuda"]))
def test_the_choice_is_cuda_exactly_when_a_gpu_and_the_cuda_provider_are_there(
        gpu: bool, available: list[str], request: str) -> None:
    usable = gpu and CUDA in available and request != "cpu"
    try:
        choice = choose_providers(gpu, available, request)  # type: ignore[arg-type]
    except ProviderError as exc:
        assert request == "cuda" and not usable and "CUDA requested" in str(exc)
        return
    assert choice.providers[-1] == CPU  # CPU is always the fallback
    assert (choice.providers[0] == CUDA) == usable == (choice.device == "gpu")
    assert choice.reason


def test_the_cpu_reasons_say_what_is_missing() -> None:
    assert choose_providers(False, [CPU]).reason == "no GPU on this machine"
    assert "run `make setup` here to install onnxruntime-gpu" in choose_providers(
        True, [CPU]).reason
    with pytest.raises(ProviderError, match="no GPU was found"):
        choose_providers(False, [CUDA, CPU], "cuda")


def _session_providers(server: LocalTriton, model: str) -> list[str]:
    match = re.search(rf"{model}: onnxruntime \S+ providers \[(.*?)\]", server.log_tail(200))
    assert match, server.log_tail()
    return [p.strip(" '") for p in match.group(1).split(",")]


def test_a_real_local_triton_reports_and_uses_the_chosen_provider(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    repo = tmp_path / "repo"
    write_tiny_model(repo, tiny_contract("tiny_act"))
    caplog.set_level("INFO", logger="orchestrator.triton.launcher")
    with LocalTriton(repo, work_dir=tmp_path / "auto") as server:
        info = server.info()
        python = server.env.bin_dir / "python"
        expected = choose_providers(gpu_present(), available_providers(python))
        assert info["device"] == expected.device
        assert info["onnxruntime_providers"] == list(expected.providers)
        assert _session_providers(server, "tiny_act") == list(expected.providers)
    assert any(f"local Triton runs ONNX Runtime on {expected.device.upper()}" in r.message
               for r in caplog.records)
    if not gpu_present():  # this machine: the CPU path, said as such
        assert info["device"] == "cpu" and info["onnxruntime_providers"] == [CPU]
        assert info["device_reason"] == "no GPU on this machine"
    with LocalTriton(repo, work_dir=tmp_path / "cpu", ort_providers="cpu") as server:
        assert server.info()["device"] == "cpu"
        assert _session_providers(server, "tiny_act") == [CPU]
