"""Write the app's OpenAPI document: ``python -m orchestrator.api.openapi_dump openapi.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from orchestrator.api.app import create_app
from orchestrator.settings import Settings


def generate() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def render() -> str:
    return json.dumps(generate(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "openapi.json")
    target.write_text(render())


if __name__ == "__main__":
    main()
