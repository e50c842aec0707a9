"""A real ACT exported by ``export`` (GPU instance group, as for production) served locally."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from orchestrator.triton.client import TritonClient
from orchestrator.triton.model_contract import ACTION_OUTPUT
from tests.support.exports import export_tiny_repository
from tests.support.triton import local_triton, random_observation


async def test_exported_act_is_served_like_onnxruntime_in_process(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    exported = export_tiny_repository(tmp_path_factory.mktemp("act_gpu"), name="act", kind="gpu")
    session = ort.InferenceSession(
        str(exported.result.onnx_path), providers=["CPUExecutionProvider"]
    )
    with local_triton(exported.repository) as triton:
        for shared_memory in (False, True):
            async with TritonClient(
                triton.grpc_url, timeout_s=30.0, shared_memory=shared_memory
            ) as client:
                contract = await client.contract("act")
                assert contract.cameras == exported.result.contract.cameras
                assert contract.action_names == exported.result.contract.action_names
                assert contract.chunk_size == exported.result.contract.chunk_size
                obs = random_observation(contract, 3, seed=2)
                action = await client.infer("act", obs)
            expected = session.run([ACTION_OUTPUT], obs)[0]
            assert action.shape == (3, contract.chunk_size, contract.action_dim)
            np.testing.assert_allclose(action, expected, rtol=1e-4, atol=1e-4)
