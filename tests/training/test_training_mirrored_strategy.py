"""Training with tf.distribute.MirroredStrategy over two logical CPU devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.subprocess
def test_tiny_training_on_two_logical_cpus(
    prepared_cache: Path, mini_config: Path, mini_data_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "train",
            "--config",
            str(mini_config),
            "--data-root",
            str(mini_data_root),
            "--cache-dir",
            str(prepared_cache),
            "--run-dir",
            str(run_dir),
            "--logical-cpus",
            "2",
            "--set",
            "train.epochs=1",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 replica(s) (MirroredStrategy)" in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["replicas"] == 2
    info = json.loads((run_dir / "training_info.json").read_text())
    assert info["strategy"] == "MirroredStrategy" and info["epochs_run"] == 1
    assert (run_dir / "best.weights.h5").exists()
    assert (run_dir / "checkpoints").is_dir()
