"""The package's import graph, read from the source (every import statement, including the
ones under ``TYPE_CHECKING`` and inside functions): no module imports one that imports it
back, and nothing under ``orchestrator/`` reaches the local test tools (the room server and
the simulated robot), which the local composition (``local_stack``) brings in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name}
            for name, path in modules.items()}


def _cycle_through(start: str, edges: dict[str, set[str]]) -> list[str] | None:
    """A path start -> ... -> start, if any (depth-first)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


@pytest.mark.parametrize("module", ["orchestrator.sessions.loop", "orchestrator.sessions.report",
                                    "orchestrator.sessions.scheduler",
                                    "orchestrator.triton.cli", "orchestrator.triton.launcher"])
def test_no_import_cycle_through(module: str) -> None:
    edges = graph()
    assert module in edges, f"{module} not found under {PACKAGE}"
    assert _cycle_through(module, edges) is None, _cycle_through(module, edges)


def test_the_graph_reader_sees_a_cycle() -> None:
    # The check above must be able to fail: a made-up two-module circle is found.
    assert _cycle_through("a", {"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def test_orchestrator_never_imports_the_local_tools() -> None:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        bad = {m for m in _imports(path)
               if m.split(".")[0] in {"arena_server", "sim_robot", "local_stack"}}
        if bad:
            offenders[str(path.relative_to(ROOT))] = sorted(bad)
    assert not offenders, offenders
