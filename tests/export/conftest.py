"""Fixtures for export tests. Logic lives in tests/support (plain functions) so the
session fixture ``exported_repository`` can move to tests/conftest.py unchanged."""

from __future__ import annotations

import pytest

from export.synthetic import (
    BuiltCheckpoint,
    make_two_camera_checkpoint,
)
from tests.support.exports import ExportedRepository, export_tiny_repository


@pytest.fixture(scope="session")
def exported_repository(tmp_path_factory: pytest.TempPathFactory) -> ExportedRepository:
    """The tiny one-camera ACT exported (CPU instance group) into a fresh repository.

    Shared by the session: tests that write into a repository must clone it first
    (tests.support.exports.clone_repository).
    """
    return export_tiny_repository(tmp_path_factory.mktemp("exported"))


@pytest.fixture(scope="session")
def one_camera_checkpoint(exported_repository: ExportedRepository) -> BuiltCheckpoint:
    return exported_repository.checkpoint


@pytest.fixture(scope="session")
def two_camera_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> BuiltCheckpoint:
    return make_two_camera_checkpoint(tmp_path_factory.mktemp("two_cameras"))
