"""examples/ci: the GitHub Actions workflow's steps, run in order as Actions would run them
(its ``run:`` commands with the inputs filled in) on a tiny checkpoint folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from export.synthetic import make_one_camera_checkpoint
from tests.support.exports import REPO_ROOT

WORKFLOW = REPO_ROOT / "examples" / "ci" / "export-policy.yml"


def workflow() -> dict[Any, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def fill(text: str, inputs: dict[str, str]) -> str:
    """The few expressions the workflow uses: inputs, secrets (none here), vars."""
    def value(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if expr.startswith("inputs."):
            return inputs[expr.removeprefix("inputs.")]
        if expr.startswith("secrets."):
            return ""
        raise AssertionError(f"unexpected expression {expr!r} in a run step or env")
    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


def test_the_workflow_steps_export_check_and_leave_the_artifacts(tmp_path: Path) -> None:
    flow = workflow()
    job = flow["jobs"]["export"]
    declared = flow[True]["workflow_dispatch"]["inputs"]  # YAML 1.1 reads `on` as True
    built = make_one_camera_checkpoint(tmp_path / "checkpoints")
    (tmp_path / "act-triton-arena").symlink_to(REPO_ROOT)  # the second checkout's path
    inputs = {"source": str(built.path.relative_to(tmp_path)), "name": "ci_policy",
              "triton": declared["triton"]["default"],
              "export_args": f"--dataset-info {built.dataset_info.relative_to(tmp_path)}"}
    assert set(inputs) == set(declared)
    env = {**os.environ, "PYTHON": sys.executable,
           **{k: fill(str(v), inputs) for k, v in job["env"].items()}}
    runs = [fill(step["run"], inputs) for step in job["steps"] if "run" in step]
    assert [r.split()[:2] for r in runs] == [
        ["act-triton-arena/examples/ci/steps.sh", s] for s in ("install", "export", "check")]
    for command in runs:
        done = subprocess.run(["bash", "-eo", "pipefail", "-c", command], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert done.stdout.startswith("OK: 1 model(s)"), done.stdout

    uploads = [s["with"] for s in job["steps"] if s.get("uses", "").startswith(
        "actions/upload-artifact")]
    assert [u["path"] for u in uploads] == [env["REPOSITORY"], env["REPORT"]]
    assert (tmp_path / "model_repository" / "ci_policy" / "1" / "model.onnx").is_file()
    report = json.loads((tmp_path / env["REPORT"]).read_text())
    assert report["ok"] and report["target"]["triton"] == "26.07"

    # A repository the container would refuse fails the job at the check step, and the
    # report (uploaded `if: always()`) says why.
    (tmp_path / "model_repository" / "ci_policy" / "config.pbtxt").write_text("nonsense {")
    done = subprocess.run(["bash", "-c", runs[-1]], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1 and "ci_policy: config: config.pbtxt does not parse" in done.stdout
    report = json.loads((tmp_path / env["REPORT"]).read_text())
    assert not report["ok"] and report["problems"][0]["code"] == "config"
