"""The browser tests' own contract: without a usable Chromium they skip outside CI and fail
under CI=true (.ci/run), so CI can never pass without having run them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.settings import REPO_ROOT


@pytest.mark.subprocess  # pytest itself, on one browser test
@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 error"), ("", "1 skipped")])
def test_missing_chromium_fails_under_ci_and_skips_elsewhere(ci: str, outcome: str) -> None:
    env = {**os.environ, "CI": ci, "FACEID_CHROMIUM": "/nonexistent/chromium"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/browser/test_docs_offline.py::test_redoc_renders_offline",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert outcome in result.stdout, result.stdout[-3000:]
    assert "/nonexistent/chromium is missing" in result.stdout
    assert result.returncode == (1 if ci else 0)
