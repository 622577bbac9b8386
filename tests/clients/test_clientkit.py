"""A client venv that cannot be made skips the test outside CI and fails it with CI=true."""

from __future__ import annotations

from pathlib import Path

import clientkit
import pytest


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(clientkit, "CACHE", tmp_path / "cache")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("this is not a requirement !!\n")  # pip refuses it locally
    return requirements


@pytest.mark.subprocess
def test_a_venv_that_cannot_be_made_fails_under_ci(
    broken: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        clientkit.client_python("broken", broken, timeout=120)
    assert not (clientkit.CACHE / "broken" / ".requirements-sha256").exists()


@pytest.mark.subprocess
def test_a_venv_that_cannot_be_made_skips_outside_ci(
    broken: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        clientkit.client_python("broken", broken, timeout=120)
