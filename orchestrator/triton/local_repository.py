"""Derive a repository the pip-installed Triton can run from an exported one.

The ``nvidia-pytriton`` wheel ships ``tritonserver`` with the python backend
only. Every onnxruntime model of the source repository becomes a python-backend
model (``model.py`` from :mod:`orchestrator.triton.python_model`) running the
very same ``model.onnx`` with ONNX Runtime, with the same name, inputs, outputs,
batching settings and parameters. The source repository is never modified.
"""

from __future__ import annotations

import contextlib
import filecmp
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from orchestrator.triton.model_contract import parse_config, render_config
from orchestrator.triton.triton_env import LauncherError

log = logging.getLogger(__name__)

PYTHON_MODEL_SOURCE = Path(__file__).with_name("python_model.py")
ONNX_FILE = "model.onnx"
_ONNX_BACKENDS = {"onnxruntime"}
_ONNX_PLATFORMS = {"onnxruntime_onnx"}


class RepositoryError(LauncherError, ValueError):
    """The source model repository cannot be served locally."""


@dataclass(frozen=True)
class DerivedModel:
    name: str
    versions: tuple[str, ...]
    converted: bool  # True: an onnxruntime model now served by the python backend


def copy_if_changed(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless identical; write a temp file and rename it.

    A running Triton maps some of these files (``libtriton_python.so``, the stub,
    ONNX graphs): overwriting one in place crashes the server, a rename does not.
    """
    if dst.exists() and filecmp.cmp(src, dst, shallow=False):
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_if_changed(text: str, dst: Path) -> bool:
    if dst.exists() and dst.read_text() == text:
        return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, dst)
    return True


def is_onnx_model(config: mc.ModelConfig) -> bool:
    return config.backend in _ONNX_BACKENDS or config.platform in _ONNX_PLATFORMS


def python_backend_config(config: mc.ModelConfig) -> mc.ModelConfig:
    """The same model served by the python backend on CPU instances."""
    derived = mc.ModelConfig()
    derived.CopyFrom(config)
    derived.backend = "python"
    derived.platform = ""
    derived.default_model_filename = ""
    derived.ClearField("optimization")  # ORT/TensorRT accelerators mean nothing here
    if not derived.instance_group:
        derived.instance_group.add(count=1)
    for group in derived.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
        group.ClearField("gpus")
    return derived


def _versions(model_dir: Path, filename: str) -> list[str]:
    return sorted(
        (p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()
         and (p / filename).is_file()),
        key=int,
    )


def _read_config(model_dir: Path) -> mc.ModelConfig:
    try:
        config = parse_config((model_dir / "config.pbtxt").read_text())
    except Exception as exc:  # text_format.ParseError and OSError alike
        raise RepositoryError(f"{model_dir / 'config.pbtxt'}: {exc}") from exc
    if not (config.backend or config.platform):
        raise RepositoryError(f"{model_dir / 'config.pbtxt'}: no backend or platform")
    if config.name and config.name != model_dir.name:
        raise RepositoryError(
            f"{model_dir}: config name {config.name!r} differs from the folder name"
        )
    config.name = model_dir.name
    return config


def _sync_onnx_model(src: Path, dst: Path, config: mc.ModelConfig) -> DerivedModel:
    filename = config.default_model_filename or ONNX_FILE
    versions = _versions(src, filename)
    if not versions:
        raise RepositoryError(f"{src}: no version folder holds {filename}")
    write_if_changed(render_config(python_backend_config(config)), dst / "config.pbtxt")
    for version in versions:
        copy_if_changed(src / version / filename, dst / version / ONNX_FILE)
        copy_if_changed(PYTHON_MODEL_SOURCE, dst / version / "model.py")
    _remove_stale_versions(dst, set(versions))
    return DerivedModel(src.name, tuple(versions), converted=True)


def _sync_python_model(src: Path, dst: Path) -> DerivedModel:
    for path in src.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            copy_if_changed(path, dst / path.relative_to(src))
    versions = _versions(src, "model.py")
    _remove_stale_versions(dst, set(versions))
    return DerivedModel(src.name, tuple(versions), converted=False)


def _remove_stale_versions(dst: Path, keep: set[str]) -> None:
    for path in dst.iterdir():
        if path.is_dir() and path.name.isdigit() and path.name not in keep:
            shutil.rmtree(path)


def sync_repository(source: Path, target: Path) -> list[DerivedModel]:
    """Mirror ``source`` into ``target`` as a python-backend repository.

    Idempotent: unchanged files are left alone (a running server keeps using
    them), new versions appear, removed models and versions disappear. Models of
    other backends cannot run without their backend and are skipped with a warning.
    """
    source = Path(source)
    if not source.is_dir():
        raise RepositoryError(f"model repository {source} does not exist")
    target.mkdir(parents=True, exist_ok=True)
    derived: list[DerivedModel] = []
    for src in sorted(p for p in source.iterdir() if (p / "config.pbtxt").is_file()):
        config = _read_config(src)
        dst = target / src.name
        if is_onnx_model(config):
            derived.append(_sync_onnx_model(src, dst, config))
        elif config.backend == "python":
            derived.append(_sync_python_model(src, dst))
        else:
            log.warning("skipping model %s: backend %r is not available locally",
                        src.name, config.backend or config.platform)
    names = {m.name for m in derived}
    for path in target.iterdir():
        if path.is_dir() and path.name not in names:
            shutil.rmtree(path)
    return derived


def fingerprint(source: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and mtimes of what the exporter writes: cheap change detection."""
    entries = []
    for path in source.glob("*/config.pbtxt"):
        entries.append(path)
        entries.extend(p for p in path.parent.glob("[0-9]*/*") if p.is_file())
    result = []
    for path in entries:
        with contextlib.suppress(OSError):  # a file may vanish between glob and stat
            st = path.stat()
            result.append((str(path.relative_to(source)), st.st_size, st.st_mtime_ns))
    return tuple(sorted(result))


class RepositoryWatcher:
    """Calls ``sync`` whenever the source repository changes (polling, in a thread).

    A new export then shows up in the derived repository by itself, and a model
    (re)load through Triton's model-control API serves it.
    """

    def __init__(self, source: Path, sync: Callable[[], object], interval_s: float) -> None:
        self.source = source
        self.sync = sync
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="local-triton-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def _run(self) -> None:
        seen = fingerprint(self.source)
        pending = None
        while not self._stop.wait(self.interval_s):
            now = fingerprint(self.source)
            if now == seen:
                pending = None
                continue
            if now != pending:  # still changing (a copy in progress?): look again next time
                pending = now
                continue
            try:
                self.sync()
                seen = now
            except Exception:  # keep watching and retry: the writer may not be done
                log.exception("re-syncing %s failed; retrying", self.source)
