"""schemathesis against the served OpenAPI document: every operation, valid and invalid
payloads (positive and negative generation), sent over HTTP to the real app (real Triton and
room server behind it). No answer may be a 5xx, and every error body must carry a `detail`
that says what is wrong."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.orchestrator import Orchestrator

# Per operation and generation mode: a CI-sized run; FUZZ_EXAMPLES=200 for a deeper one.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))


def explains_itself(response: requests.Response) -> str | None:
    """None when an error body has a meaningful `detail`; else what is wrong with it."""
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} without a JSON body: {response.text[:200]!r}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and len(detail) >= 8:
        return None
    if isinstance(detail, list) and detail and all(
        isinstance(d, dict) and d.get("msg") and "loc" in d for d in detail
    ):
        return None  # FastAPI validation errors: where and what, per field
    return f"{response.status_code} with an unhelpful body: {body!r}"


def check_operation(operation: Any, mode: GenerationMode, base_url: str,
                    http: requests.Session, problems: list[str], statuses: Counter[int]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, session=http, timeout=30)
        statuses[response.status_code] += 1
        where = f"{case.method} {case.formatted_path} ({mode.value})"
        if response.status_code >= 500:
            problems.append(f"{where}: {response.status_code} {response.text[:300]}")
        why = explains_itself(response)
        if why:
            problems.append(f"{where}: {why}")
        if mode is GenerationMode.POSITIVE and response.status_code < 400:
            # What the app answers matches what it documents.
            case.validate_response(response, checks=[not_a_server_error,
                                                      response_schema_conformance])

    try:
        run()
    except Unsatisfiable:
        # No parameters and no body (GET /, /health ...): nothing can be made invalid.
        if mode is not GenerationMode.NEGATIVE:
            raise


def fuzz(base_url: str) -> tuple[list[str], Counter[int]]:
    """Run in a worker thread (the API is served by the test's event loop)."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    problems: list[str] = []
    statuses: Counter[int] = Counter()
    http = requests.Session()
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the served schema has an invalid operation: {result}"
        operations.append(result.ok())
    assert len(operations) >= 12, [op.label for op in operations]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            check_operation(operation, mode, base_url, http, problems, statuses)
    return problems, statuses


@pytest.mark.timeout(120)
async def test_schemathesis_finds_no_5xx_and_every_error_explains_itself(
    orchestrator: Orchestrator,
) -> None:
    problems, statuses = await asyncio.to_thread(fuzz, orchestrator.base_url)
    assert not problems, "\n".join(sorted(set(problems))[:40])
    # It really ran: many requests, answered and refused ones (404, 422, ...).
    assert statuses.total() >= 100, statuses
    assert statuses[200] and statuses[404] and statuses[422], statuses
    # The fuzzer created nothing by chance that outlives the test.
    for session in orchestrator.manager.sessions():
        await orchestrator.http.delete(f"/sessions/{session.session_id}")
