"""Fixtures shared by every test folder: the shared datasets and one face pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "orl").is_dir():
        pytest.skip(f"shared datasets not found at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture(scope="session")
def pipeline():  # type: ignore[no-untyped-def]
    from faces import FacePipeline

    return FacePipeline()
