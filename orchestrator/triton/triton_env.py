"""Locate the Triton server's own Python environment (``.venv-triton``).

It holds the ``nvidia-pytriton`` wheel (``tritonserver``, the python backend,
one backend stub per Python version) with numpy<2 and onnxruntime.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "TRITON_PYTHON_ENV"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENV = REPO_ROOT / ".venv-triton"


class LauncherError(RuntimeError):
    """The local Triton server could not be prepared, started or stopped."""


@dataclass(frozen=True)
class TritonEnv:
    """Where the wheel's server, backend, stubs and libraries live in one environment."""

    root: Path
    python_version: str  # "3.12": picks the matching python backend stub
    python_libdir: Path  # holds libpython, which the stub links against
    server: Path
    python_backend: Path
    stub: Path
    libs: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"


def find_triton_env(env: str | os.PathLike[str] | None = None) -> TritonEnv:
    """Locate the Triton env: ``env``, else ``$TRITON_PYTHON_ENV``, else ``.venv-triton``."""
    root = Path(env or os.environ.get(ENV_VAR) or DEFAULT_ENV).absolute()
    python = root / "bin" / "python"
    hint = f"create it with `make setup` or point {ENV_VAR} at an env with nvidia-pytriton"
    if not python.exists():
        raise LauncherError(f"no Triton environment at {root}: {hint}")
    probe = (
        "import json, sys, sysconfig, site; print(json.dumps([f'{sys.version_info[0]}."
        "{sys.version_info[1]}', sysconfig.get_config_var('LIBDIR'), site.getsitepackages()]))"
    )
    try:
        out = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise LauncherError(f"cannot run {python}: {exc}") from exc
    version, libdir, site_dirs = json.loads(out)
    for site_dir in map(Path, site_dirs):
        wheel = site_dir / "pytriton" / "tritonserver"
        if (wheel / "bin" / "tritonserver").is_file():
            break
    else:
        raise LauncherError(f"nvidia-pytriton is not installed in {root}: {hint}")
    stub = wheel / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise LauncherError(f"nvidia-pytriton has no python backend stub for Python {version}")
    return TritonEnv(
        root=root,
        python_version=version,
        python_libdir=Path(libdir),
        server=wheel / "bin" / "tritonserver",
        python_backend=wheel / "backends" / "python",
        stub=stub,
        libs=site_dir / "nvidia_pytriton.libs",
    )
