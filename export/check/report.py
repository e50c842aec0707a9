"""What a repository check found: one problem per line, or the same as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .versions import Target


@dataclass(frozen=True)
class Problem:
    model: str
    code: str  # config, io, metadata, contract, version, ir_version, opset, hash, run, ...
    message: str
    version: str | None = None

    def line(self) -> str:
        where = self.model if self.version is None else f"{self.model}/{self.version}"
        return f"{where}: {self.code}: {self.message}"


@dataclass
class ModelReport:
    name: str
    versions_served: list[str] = field(default_factory=list)
    graphs: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> facts
    accelerator: dict[str, str] | None = None


@dataclass
class Report:
    repository: str
    target: Target
    runtime: str  # the ONNX Runtime this check ran graphs with
    models: list[ModelReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, model: str, code: str, message: str, version: str | None = None) -> None:
        self.problems.append(Problem(model, code, message, version))

    def lines(self) -> list[str]:
        return [p.line() for p in self.problems]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "repository": self.repository,
            "target": asdict(self.target),
            "checked_with_onnxruntime": self.runtime,
            "models": [asdict(m) for m in self.models],
            "problems": [asdict(p) | {"line": p.line()} for p in self.problems],
            "notes": self.notes,
        }
