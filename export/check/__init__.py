"""``python -m export.check REPOSITORY [--triton 26.07] [--json]``: will a stock Triton
container load and serve this model repository, and can the orchestrator drive it?

Reads the repository as Triton's onnxruntime backend does: every ``config.pbtxt`` parsed
into the real ``ModelConfig`` protobuf, the versions its version policy serves, each graph's
IR version and opsets against the target container's ONNX Runtime (``versions.py``), its
inputs/outputs against the config; then the orchestrator's side: the metadata the
``ModelContract`` needs, consistent with the tensors, the recorded sha256; and finally each
graph runs in ONNX Runtime on zero and random inputs with finite outputs.
"""

from __future__ import annotations

from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from .config import (
    check_accelerators,
    check_contract_tensors,
    check_metadata,
    read_config,
)
from .graph import check_hash, check_io, check_runs, check_versions, fp16_parity
from .report import ModelReport, Problem, Report
from .versions import DEFAULT_TRITON, Target, UnknownTriton, target

__all__ = ["DEFAULT_TRITON", "ModelReport", "Problem", "Report", "Target", "UnknownTriton",
           "check_repository", "target"]

ONNX_FILE = "model.onnx"


def _version_folders(model_dir: Path) -> list[str]:
    # Triton ignores names that are not positive integers.
    return sorted((p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()
                   and not p.name.startswith("0")), key=int)


def served_versions(config: mc.ModelConfig, available: list[str]) -> tuple[list[str], list[str]]:
    """(versions Triton's version policy loads, versions it names that do not exist)."""
    policy = config.version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return available, []
    if choice == "specific":
        wanted = [str(v) for v in policy.specific.versions]
        return [v for v in wanted if v in available], [v for v in wanted if v not in available]
    count = policy.latest.num_versions if choice == "latest" else 1
    return available[-max(count, 1):], []


def check_model(report: Report, model_dir: Path, run: bool) -> None:
    name = model_dir.name
    config = read_config(report, model_dir)
    if config is None:
        return
    model = ModelReport(name)
    report.models.append(model)
    contract = check_metadata(report, config, name)
    if contract is not None:
        check_contract_tensors(report, config, contract)
    model.accelerator = check_accelerators(report, config, name)
    filename = config.default_model_filename or ONNX_FILE
    available = _version_folders(model_dir)
    served, absent = served_versions(config, available)
    for version in absent:
        report.add(name, "version", f"the version policy names version {version}, which has "
                                    "no folder")
    paths: dict[str, Path] = {}
    for version in served:
        path = model_dir / version / filename
        if not path.is_file():
            report.add(name, "version", f"no {filename} in version folder {version} (Triton "
                                        "fails to load it)", version)
        else:
            paths[version] = path
    if not available:
        report.add(name, "version", "no version folder (1, 2, ...): Triton serves nothing")
    model.versions_served = sorted(paths, key=int)
    skipped = sorted(set(available) - set(served), key=int)
    if skipped:
        report.notes.append(f"{name}: versions {', '.join(skipped)} are not served by the "
                            "version policy and were not checked")
    params = {k: v.string_value for k, v in config.parameters.items()}
    if paths:
        check_hash(report, name, paths, params.get("onnx_sha256", ""))
    for version, path in sorted(paths.items(), key=lambda kv: int(kv[0])):
        model.graphs[version] = _check_graph(report, name, version, path, config, run)
        trt = model.accelerator
        if run and trt is not None and trt.get("precision_mode") == "FP16" \
                and version == model.versions_served[-1]:
            report.notes.append(fp16_parity(report, name, version, path, config))


def _check_graph(report: Report, model: str, version: str, path: Path,
                 config: mc.ModelConfig, run: bool) -> dict[str, object]:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        report.add(model, "io", f"{path.name} is not an ONNX model: {exc}", version)
        return {}
    facts = check_versions(report, model, version, proto, report.target)
    check_io(report, model, version, proto, config)
    if run:
        facts.update(check_runs(report, model, version, path, config))
    return facts


def check_repository(repository: str | Path, triton: str = DEFAULT_TRITON, *,
                     run: bool = True) -> Report:
    """Check every model of ``repository`` for the Triton container ``triton``.

    Raises UnknownTriton for a tag not in the release table; everything else found is a
    Problem in the report (``report.ok`` is False then).
    """
    import onnxruntime as ort

    root = Path(repository)
    report = Report(str(root), target(triton), ort.__version__)
    if not root.is_dir():
        report.add(str(root), "repository", "not a folder")
        return report
    model_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for model_dir in model_dirs:
        if not (model_dir / "config.pbtxt").is_file():
            report.add(model_dir.name, "config", "no config.pbtxt (this check, like the "
                                                 "production Triton, needs one per model)")
            continue
        check_model(report, model_dir, run)
    if not model_dirs:
        report.add(str(root), "repository", "holds no model folder")
    return report
