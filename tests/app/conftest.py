"""Fixtures shared by the service tests (helpers live in ``faceid_testkit``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faceid_testkit import build_tiny_model
from pg_testkit import PostgresCluster, start_cluster

from faces import FacePipeline


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny" / "1")


@pytest.fixture(scope="session")
def face_pipeline() -> FacePipeline:
    """One MTCNN detector for every app of the session (it is thread-safe)."""
    return FacePipeline()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session (skipped outside CI when PostgreSQL
    is not installed; a failure with CI=true)."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()
