"""The service runs without the training-only packages (the `train` extra): the serving
image does not install them, so nothing the service imports may need them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINING_ONLY = ("matplotlib", "h5py", "yaml")

# A child interpreter in which importing a training-only module fails as if it were not
# installed; it imports the service's entry points and loads a model (TensorFlow imports
# h5py and matplotlib when it can, and must carry on when it cannot).
CHILD = """
import sys

BLOCKED = set(sys.argv[1].split(","))


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Refuse())
try:
    import yaml  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the blocker does not work")

import app.__main__  # noqa: E402,F401
import app.main  # noqa: E402,F401

if len(sys.argv) > 2:
    import numpy as np

    from app.inference.model import EmbeddingModel

    model = EmbeddingModel(sys.argv[2], engine="savedmodel")
    print(model.embed(np.zeros((1, 112, 112, 3), np.uint8)).shape)
print("loaded:", sorted(BLOCKED & set(sys.modules)))
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-c", CHILD, ",".join(TRAINING_ONLY), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.subprocess
def test_the_service_imports_without_training_only_packages() -> None:
    done = _run()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("loaded: []"), done.stdout


@pytest.mark.subprocess
def test_a_model_loads_and_embeds_without_training_only_packages(tiny_model_dir: Path) -> None:
    done = _run(str(tiny_model_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded: []" in done.stdout, done.stdout
