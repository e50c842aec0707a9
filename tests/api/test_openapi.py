"""The committed openapi.json is what the app generates, and a superset of the seed contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api.openapi_dump import generate, render

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT.parent / "shared" / "seed-openapi.json"


@pytest.fixture(scope="module")
def ours() -> dict[str, Any]:
    return generate()


@pytest.fixture(scope="module")
def seed() -> dict[str, Any]:
    assert SEED.exists(), f"seed contract missing at {SEED}"
    return json.loads(SEED.read_text())


def test_committed_openapi_matches_app() -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert committed == render(), "openapi.json drifted from the app: run `make openapi`"


def test_every_seed_operation_is_kept(ours: dict[str, Any], seed: dict[str, Any]) -> None:
    for path, methods in seed["paths"].items():
        assert path in ours["paths"], f"path {path} removed"
        for method, op in methods.items():
            mine = ours["paths"][path].get(method)
            assert mine is not None, f"{method.upper()} {path} removed"
            assert mine["operationId"] == op["operationId"]
            assert mine.get("tags") == op.get("tags")
            seed_params = {p["name"]: p for p in op.get("parameters", [])}
            my_params = {p["name"]: p for p in mine.get("parameters", [])}
            for name, param in seed_params.items():
                assert name in my_params, f"{method} {path}: parameter {name} removed"
                assert my_params[name]["in"] == param["in"]
                assert my_params[name].get("required", False) == param.get("required", False)
            if "requestBody" in op:
                assert mine["requestBody"]["content"]["application/json"]["schema"] == (
                    op["requestBody"]["content"]["application/json"]["schema"]
                )
            for code in op["responses"]:
                assert code in mine["responses"], f"{method} {path}: response {code} removed"
            seed_ok = op["responses"]["200"]["content"]["application/json"]["schema"]
            if "$ref" in seed_ok or "items" in seed_ok:
                my_ok = mine["responses"]["200"]["content"]["application/json"]["schema"]
                assert my_ok.get("$ref") == seed_ok.get("$ref")
                assert my_ok.get("items") == seed_ok.get("items")


_SHAPE_KEYS = ("type", "$ref", "items", "additionalProperties", "anyOf")


def _shape(schema: Any) -> Any:
    """The type shape of a schema, without the constraints we are allowed to add
    (pattern, lengths, descriptions): those narrow bad input, they do not rename fields."""
    if isinstance(schema, list):
        return [_shape(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    return {k: _shape(v) for k, v in schema.items() if k in _SHAPE_KEYS}


def test_every_seed_schema_field_is_kept(ours: dict[str, Any], seed: dict[str, Any]) -> None:
    mine_all = ours["components"]["schemas"]
    for name, schema in seed["components"]["schemas"].items():
        assert name in mine_all, f"schema {name} removed"
        mine = mine_all[name]
        assert set(mine.get("required", [])) <= set(schema.get("required", [])) | set(
            mine.get("required", [])
        )
        # A field required by us must have been required by the seed (no new demands).
        assert set(mine.get("required", [])) <= set(schema.get("required", [])), name
        for field, spec in schema.get("properties", {}).items():
            assert field in mine["properties"], f"{name}.{field} removed"
            ours_field = mine["properties"][field]
            if "default" in spec:
                assert ours_field.get("default") == spec["default"], f"{name}.{field} default"
            for key in ("type", "anyOf", "items", "additionalProperties"):
                if key in spec:
                    got = _shape(ours_field).get(key)
                    want = _shape(spec)[key]
                    assert got == want, f"{name}.{field}.{key}: {got} != {want}"


def test_security_schemes_and_tags_kept(ours: dict[str, Any], seed: dict[str, Any]) -> None:
    assert ours["components"]["securitySchemes"] == seed["components"]["securitySchemes"]
    seed_tags = {t["name"] for t in seed["tags"]}
    assert seed_tags <= {t["name"] for t in ours["tags"]}
