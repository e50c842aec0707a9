"""docker-compose.yml and the Dockerfile, validated for real without a Docker engine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "build" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_matches_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    if not SCHEMA.exists():
        subprocess.run(
            [sys.executable, str(ROOT / "tools" / "fetch_compose_schema.py"), str(SCHEMA)],
            check=True, timeout=120,
        )
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_docker_compose_config_accepts_every_profile() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing in CI: .ci/run installs Debian's package")
        pytest.skip("docker-compose (Debian package) not installed on this machine")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "--profile", "export", "--profile", "local-arena",
         "--profile", "monitoring", "config", "--services"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {"triton", "orchestrator", "arena", "local-arena",
                                          "export", "export-worker", "prometheus", "grafana"}


def test_triton_service_is_production_ready(compose: dict[str, Any]) -> None:
    triton = compose["services"]["triton"]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d{2}\.\d{2}-py3", triton["image"])
    assert "./model_repository:/models:ro" in triton["volumes"]
    command = " ".join(triton["command"])
    assert re.search(r"--model-control-mode=(explicit|poll)", command)
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    host_ports = {p.split(":")[0] for p in triton["ports"]}
    assert not host_ports & {"8000", "8001"}, "Triton must not take the Arena or API port"
    assert triton.get("ipc") or triton.get("shm_size")


def test_orchestrator_waits_for_healthy_triton(compose: dict[str, Any]) -> None:
    orch = compose["services"]["orchestrator"]
    assert orch["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "8001:8001" in orch["ports"]
    assert orch["environment"]["ORCHESTRATOR_TRITON_URL"] == "triton:8001"
    assert orch["ipc"] == "service:triton"
    # The tick thread's priority: asked for, and the capability to get it granted.
    nice = re.fullmatch(r"\$\{ORCHESTRATOR_CONTROL_NICE:-(-?\d+)\}",
                        orch["environment"]["ORCHESTRATOR_CONTROL_NICE"])
    assert nice and int(nice.group(1)) < 0
    assert "SYS_NICE" in orch["cap_add"]
    assert compose["services"]["arena"]["build"].startswith("https://")
    assert "8000:8000" in compose["services"]["arena"]["ports"]
    assert compose["services"]["export"]["profiles"] == ["export"]
    assert compose["services"]["local-arena"]["profiles"] == ["local-arena"]


def _stage(dockerfile: str, name: str) -> str:
    match = re.search(rf"^FROM \S+ AS {name}\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S)
    assert match, f"Dockerfile has no stage {name}"
    return match.group(1)


def test_dockerfile_installs_what_pyproject_declares() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, re.M))
    assert {p.rstrip("*") for p in packages} <= copied, "Dockerfile must copy every package"
    orchestrator = _stage(dockerfile, "orchestrator")
    assert re.search(r'^RUN pip install \.$', orchestrator, re.M), "core dependencies only"
    assert "USER app" in orchestrator and "HEALTHCHECK" in orchestrator
    core = " ".join(project["project"]["dependencies"]).lower()
    assert "torch" not in core and "lerobot" not in core, "the orchestrator image has no torch"
    export = _stage(dockerfile, "export")
    extras = re.findall(r'pip install "\.\[(\w+)\]"', export)
    assert extras and set(extras) <= set(project["project"]["optional-dependencies"])
