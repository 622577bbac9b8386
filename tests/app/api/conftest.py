"""The default ``client`` of the API tests: a started app on the tiny test model with an
empty gallery of its own (modules that need the shipped model or keys define their own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faceid_testkit import make_settings, running_app
from fastapi.testclient import TestClient

from faces import FacePipeline


@pytest.fixture(scope="module")
def client(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = make_settings(tiny_model_dir, tmp_path_factory.mktemp("data"))
    with running_app(settings, face_pipeline) as c:
        yield c
