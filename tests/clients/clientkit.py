"""A venv per third-party client, made once from a pinned requirements file.

The venv lives in ``.cache/clients/<name>`` (git-ignored) and is rebuilt when its
requirements file changes. When it cannot be made (no network to PyPI, no ``venv``
module), the test skips with the reason, except under CI (``CI=true``), where it fails:
CI must not pass without having run the client.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("FACEID_CLIENTS_CACHE", REPO / ".cache" / "clients"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip (outside CI) or fail (CI=true) because the client cannot run."""
    if in_ci():
        pytest.fail(f"CI=true and the client cannot run: {reason}")
    pytest.skip(reason)


def client_python(name: str, requirements: Path, timeout: float = 600) -> Path:
    """The python of the venv ``name`` with ``requirements`` installed (made if needed)."""
    stamp_value = hashlib.sha256(requirements.read_bytes()).hexdigest()
    venv = CACHE / name
    python = venv / "bin" / "python"
    stamp = venv / ".requirements-sha256"
    if python.exists() and stamp.exists() and stamp.read_text() == stamp_value:
        return python
    building = venv  # complete once the stamp is written, last
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(building)],
        [
            str(building / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(requirements),
        ],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(building, ignore_errors=True)
            unavailable(f"cannot make the {name} venv: {exc}")
        if done.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            unavailable(
                f"cannot make the {name} venv ({' '.join(step[-3:])}): {done.stderr[-2000:]}"
            )
    stamp.write_text(stamp_value)
    return python
