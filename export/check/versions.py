"""Which ONNX graphs a Triton container's ONNX Runtime loads (standard library only).

The Makefile runs this file directly (``python export/check/versions.py --compose
docker-compose.yml``) to pin the small ``.venv-ort`` environment to the exact ONNX
Runtime of the container the compose file pins, before any project dependency exists.

Sources:
- Container -> ONNX Runtime: ``TRITON_VERSION_MAP`` / ``DEFAULT_TRITON_VERSION_MAP``
  ("ORT version") at the top of ``build.py`` in each ``rNN.MM`` branch of
  github.com/triton-inference-server/server (read in every branch r24.01 .. r26.08).
- ONNX Runtime -> newest IR version and ai.onnx opset it loads: the "ONNX opset support"
  table of onnxruntime.ai/docs/reference/compatibility.html for ORT <= 1.20 (1.17: opset 20,
  IR 9; 1.18-1.20: opset 21, IR 10). That table stops at 1.20, so every row below was
  also measured: the exact wheel loads a one-node graph stamped with IR i / opset o, and
  rejects i+1 / o+1 (``ValidateOpsetForDomain``, "Unsupported model IR version"). The
  measured 1.19.2 row equals the documented one.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# The container docker-compose.yml pins (tests check that both agree).
DEFAULT_TRITON = "26.07"

# Triton container (nvcr.io/nvidia/tritonserver:<tag>-py3) -> ONNX Runtime in its
# onnxruntime backend, from build.py of the matching release branch.
TRITON_ORT: dict[str, str] = {
    "24.01": "1.16.3", "24.02": "1.16.3", "24.03": "1.17.2", "24.04": "1.17.3",
    "24.05": "1.18.0", "24.06": "1.18.0", "24.07": "1.18.1", "24.08": "1.19.0",
    "24.09": "1.19.2", "24.10": "1.19.2", "24.11": "1.19.2", "24.12": "1.20.1",
    "25.01": "1.20.1", "25.02": "1.20.1", "25.03": "1.21.0", "25.04": "1.21.0",
    "25.05": "1.22.0", "25.06": "1.22.0", "25.07": "1.22.0", "25.08": "1.23.0",
    "25.09": "1.23.0", "25.10": "1.23.1", "25.11": "1.23.2", "25.12": "1.23.2",
    "26.01": "1.23.2", "26.02": "1.24.1", "26.03": "1.24.2", "26.04": "1.24.4",
    "26.05": "1.24.4", "26.06": "1.24.4", "26.07": "1.27.0", "26.08": "1.28.0",
}  # fmt: skip

# ONNX Runtime minor release -> (newest IR version, newest ai.onnx opset) it loads.
ORT_LIMITS: dict[str, tuple[int, int]] = {
    "1.16": (9, 19), "1.17": (9, 20), "1.18": (10, 21), "1.19": (10, 21), "1.20": (10, 21),
    "1.21": (10, 22), "1.22": (10, 22), "1.23": (11, 23), "1.24": (13, 25),
    "1.27": (13, 26), "1.28": (13, 26),
}  # fmt: skip
MIN_OPSET = 7  # every ONNX Runtime release loads opsets back to 7 (same doc)

_IMAGE = re.compile(r"^\s*image:\s*[\"']?nvcr\.io/nvidia/tritonserver:(\d{2}\.\d{2})-py3", re.M)


@dataclass(frozen=True)
class Target:
    triton: str
    onnxruntime: str
    max_ir_version: int
    max_opset: int

    def describe(self) -> str:
        return (f"Triton {self.triton} (ONNX Runtime {self.onnxruntime}: IR <= "
                f"{self.max_ir_version}, opset {MIN_OPSET}..{self.max_opset})")


class UnknownTriton(ValueError):
    pass


def target(triton: str) -> Target:
    """The limits of one container tag ("26.07"; "26.07-py3" is accepted too)."""
    tag = triton.strip().removesuffix("-py3")
    if tag not in TRITON_ORT:
        raise UnknownTriton(f"unknown Triton release {triton!r}; known: {', '.join(TRITON_ORT)}")
    ort = TRITON_ORT[tag]
    ir, opset = ORT_LIMITS[".".join(ort.split(".")[:2])]
    return Target(tag, ort, ir, opset)


def compose_triton(compose_file: str | Path) -> str:
    """The tritonserver tag a compose file pins (first match)."""
    text = Path(compose_file).read_text()
    match = _IMAGE.search(text)
    if match is None:
        raise UnknownTriton(f"{compose_file} pins no nvcr.io/nvidia/tritonserver:<tag>-py3 image")
    return match.group(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="ONNX Runtime of a Triton container")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--compose", help="print the ORT version of the image this file pins")
    group.add_argument("--triton", help="print the ORT version of this container tag")
    args = p.parse_args(argv)
    try:
        tag = compose_triton(args.compose) if args.compose else args.triton
        sys.stdout.write(target(tag).onnxruntime + "\n")
    except (OSError, UnknownTriton) as exc:
        sys.stderr.write(f"versions: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
