"""Settings that cannot work are refused when the orchestrator starts, naming the setting;
they were accepted, and then every create (or every tick) failed blaming the request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from orchestrator.settings import Settings


@pytest.mark.parametrize(("name", "value"), [
    ("LATENCY_PRIOR_S", "inf"), ("ENSEMBLE_M", "inf"), ("STALE_AFTER_S", "inf"),
    ("TRITON_TIMEOUT_S", "nan"), ("ARENA_TIMEOUT_S", "inf"), ("MAX_STEP", "-inf"),
    ("PORT", "-5"), ("PORT", "70000"), ("ARENA_PORT", "0"), ("LOCAL_TRITON_PORT_BASE", "65535"),
])
def test_a_value_no_session_could_run_with_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"ORCHESTRATOR_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


def test_the_orchestrator_does_not_start_with_one() -> None:
    env = {**os.environ, "ORCHESTRATOR_LATENCY_PRIOR_S": "inf"}
    done = subprocess.run([sys.executable, "-m", "orchestrator"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "latency_prior_s" in done.stderr and "finite" in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize(("value", "hosts"), [
    ("myhost.example", ["myhost.example"]),  # was a JSON parse error: the orchestrator died
    ("a.example, b.example:8000", ["a.example", "b.example:8000"]),
    ('["a.example", "[::1]:9000"]', ["a.example", "[::1]:9000"]),
    ("", []),
])
def test_host_lists_take_json_or_commas(
    monkeypatch: pytest.MonkeyPatch, value: str, hosts: list[str]
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_ARENA_ALLOWLIST", value)
    monkeypatch.setenv("ORCHESTRATOR_CORS_ALLOW_ORIGINS", value)
    settings = Settings()
    assert settings.arena_allowlist == hosts and settings.cors_allow_origins == hosts


def test_a_broken_json_list_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRATOR_ARENA_ALLOWLIST", '["a.example",')
    with pytest.raises(ValidationError, match="arena_allowlist"):
        Settings()
