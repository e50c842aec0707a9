"""Atomic writes into a Triton model repository.

A Triton server may poll the repository while we write, so it must never see a
half-written model: everything is built in a staging folder next to the repository
(same filesystem, outside Triton's view) and moved in with ``rename``. A new export
adds version N+1; older versions are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from .errors import ExportError

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.pbtxt"
ONNX_NAME = "model.onnx"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def validate_model_name(name: str) -> None:
    if not _MODEL_NAME.match(name):
        raise ExportError(
            f"invalid model name {name!r}: use letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _probe_writable(folder: Path, problem: str) -> None:
    """Create and delete a file in ``folder``: the only honest writability test
    (permission bits say nothing for root, read-only mounts or full disks)."""
    if not folder.is_dir():
        raise ExportError(f"{problem}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".export-probe-", dir=folder)
    except OSError as exc:
        raise ExportError(f"{problem}: {folder} is not writable ({exc.strerror})") from exc
    os.close(fd)
    os.unlink(probe)


def _staging_parent(repository: Path) -> Path:
    """Where an export is staged: next to the repository, when a rename can move it in
    from there; otherwise (a repository that is a mount point, as a container's or a
    Kubernetes volume is; a parent not ours to write) the system's temp folder, and
    ``commit`` copies it into the repository before its one rename."""
    parent = _nearest_existing(repository.parent)
    if parent.stat().st_dev == _nearest_existing(repository).stat().st_dev:
        try:
            _probe_writable(parent, "")
            return parent
        except ExportError:
            pass
    return Path(tempfile.gettempdir())


def check_repository(repository: Path, name: str) -> None:
    """Fail early, before the slow export, if the model could not be written."""
    repository = repository.absolute()
    if repository.exists():
        _probe_writable(repository, f"cannot write to repository {repository}")
    else:
        _probe_writable(_nearest_existing(repository), f"cannot create repository {repository}")
    model_dir = repository / name
    if model_dir.exists() and not model_dir.is_dir():
        raise ExportError(f"{model_dir} exists and is not a model folder")
    if model_dir.is_dir():
        _probe_writable(model_dir, f"cannot add a version to {model_dir}")


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    # Triton ignores non-numeric names and names starting with "0"; so do we.
    return sorted(
        int(p.name)
        for p in model_dir.iterdir()
        if p.is_dir() and p.name.isdigit() and not p.name.startswith("0")
    )


def choose_version(model_dir: Path, requested: int | None) -> int:
    versions = existing_versions(model_dir)
    if requested is None:
        return (versions[-1] + 1) if versions else 1
    if requested < 1:
        raise ExportError(f"--version must be >= 1, got {requested}")
    if requested in versions or (model_dir / str(requested)).exists():
        raise ExportError(
            f"version {requested} of {model_dir.name} already exists in {model_dir.parent}; "
            "an export never overwrites a version (omit --version to add the next one)"
        )
    if versions and requested < versions[-1]:
        # The model has one config.pbtxt, written by each export: an older version added
        # now would describe the served (newest) version with this checkpoint's contract.
        raise ExportError(
            f"version {requested} of {model_dir.name} is older than its newest version "
            f"{versions[-1]}; an export adds a version above the newest (omit --version)"
        )
    return requested


class StagedModel:
    """A staging folder for one export; ``commit`` moves it into the repository.

    Used as a context manager: whatever was not committed is removed on exit.
    """

    def __init__(self, repository: Path, name: str) -> None:
        self.repository = repository.absolute()
        self.name = name
        parent = _staging_parent(self.repository)
        _sweep_dead_stagings(parent, self.repository.name)
        # Whose it is, in its name: an export killed outright (SIGKILL, OOM) leaves it, and
        # the next export on this host removes it once that process is gone.
        prefix = f".{self.repository.name}.{name}.staging-{_HOST}-{os.getpid()}-"
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self.version_dir = self.root / "version"
        self.version_dir.mkdir()

    @property
    def onnx_path(self) -> Path:
        return self.version_dir / ONNX_NAME

    def __enter__(self) -> StagedModel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def commit(self, config_text: str, version: int, *, auto: bool = False) -> Path:
        """Move the staged version (and config) into place; returns the version folder.
        ``auto``: the version was chosen, not asked for. Exports into one repository
        commit one at a time, and an auto version is chosen again then: one a concurrent
        export took meanwhile failed this export after all its work."""
        model_dir = self.repository / self.name
        try:
            self.repository.mkdir(parents=True, exist_ok=True)
            with _locked(self.repository):
                if auto:
                    version = choose_version(model_dir, None)
                if not model_dir.exists():
                    # New model: build the whole folder, then one rename makes it appear.
                    staged_model = self.root / "model"
                    staged_model.mkdir()
                    self.version_dir.rename(staged_model / str(version))
                    (staged_model / CONFIG_NAME).write_text(config_text)
                    self._move_in(staged_model, model_dir)
                else:
                    self._add_version(model_dir, config_text, version)
        except OSError as exc:
            raise ExportError(f"could not write into {self.repository}: {exc}") from exc
        logger.info("wrote %s version %d", model_dir, version)
        return model_dir / str(version)

    def _add_version(self, model_dir: Path, config_text: str, version: int) -> None:
        """Write the new config beside the old one, add the version folder, then swap the
        config with one replace: Triton reads either the old or the new config, never half
        of one."""
        choose_version(model_dir, version)  # an export from elsewhere may have added one
        # A name of its own: two exports into one model must not share a temp file.
        fd, name = tempfile.mkstemp(prefix=f".{CONFIG_NAME}.", suffix=".new", dir=model_dir)
        pending = Path(name)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(config_text)
            pending.chmod(0o644)
            self._move_in(self.version_dir, model_dir / str(version))
        except OSError:
            pending.unlink(missing_ok=True)
            raise
        os.replace(pending, model_dir / CONFIG_NAME)

    def _move_in(self, staged: Path, target: Path) -> None:
        """One rename puts ``staged`` at ``target``. From another filesystem it is copied
        into a hidden folder beside ``target`` first (Triton in poll mode may log that
        folder as a model it cannot load while the copy runs)."""
        try:
            staged.rename(target)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        # Beside the target: a model folder may itself be a link or mount elsewhere.
        incoming = Path(tempfile.mkdtemp(prefix=".export-incoming-", dir=target.parent))
        try:
            shutil.copytree(staged, incoming / "copy")
            (incoming / "copy").rename(target)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)


_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:64] or "host"


def _sweep_dead_stagings(parent: Path, repository_name: str) -> None:
    """Remove this repository's staging folders left by exports of this host whose process
    is gone. Another host's (a shared folder) and a live process's are kept."""
    pattern = re.compile(re.escape(f".{repository_name}.") + r".+\.staging-"
                         + re.escape(_HOST) + r"-(\d+)-[^/]+$")
    with contextlib.suppress(OSError):
        for folder in parent.iterdir():
            found = pattern.match(folder.name)
            if found is None or _alive(int(found.group(1))):
                continue
            logger.info("removing %s, left by an export that was killed", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@contextlib.contextmanager
def _locked(repository: Path) -> Iterator[None]:
    """The repository folder locked (``flock``) for one commit; where the filesystem
    cannot lock, unlocked (as before): the version checks still refuse an overwrite."""
    fd = os.open(repository, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            logger.debug("cannot lock %s (%s); committing unlocked", repository, exc)
        yield
    finally:
        os.close(fd)  # releases the lock
