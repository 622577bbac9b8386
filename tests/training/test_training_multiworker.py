"""Multi-worker training (MultiWorkerMirroredStrategy, TF_CONFIG) with local processes.

Two workers started by ``scripts/train-multiworker.sh`` on the tiny config train one
model together: it exports with the same card and signature as a one-worker run's and
evaluates within noise of it; a worker killed mid-epoch is restarted, and the job
continues from the chief's backup and completes.

The comparison runs without augmentation, unshuffled and with BatchNorm frozen, so that
"within noise" can be tight: each worker takes every 2nd crop, so unshuffled the two
workers' batches k together are exactly the one worker's batch k, and frozen BatchNorm
does not compute statistics per replica (16 crops) instead of per global batch (32). What
is left between the two runs is the order of floating-point sums. (With augmentation and
shuffling, the tiny recipe's own run-to-run spread is about 0.2 in validation accuracy:
10 steps train a model barely past its random start.) The restart test runs the tiny
config as it is.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.cluster import Cluster, cluster_from_env

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "scripts" / "train-multiworker.sh"


def _data_args(cfg: Path, data_root: Path, cache: Path) -> list[str]:
    return ["--config", str(cfg), "--data-root", str(data_root), "--cache-dir", str(cache)]


def _env(tmp: Path) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(REPO),
        "PYTHON": sys.executable,
        "TMPDIR": str(tmp),  # where a non-chief worker writes (and must clean up)
    }


def _launch(args: list[str], env: dict[str, str], out: Path) -> subprocess.Popen:
    with open(out, "w") as fh:
        return subprocess.Popen(
            ["bash", str(LAUNCHER), *args],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so a failed test can stop the launcher and its workers
        )


def _finish(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _epoch_losses(log: str) -> list[str]:
    return re.findall(r"epoch \d+/\d+ done in [\d.]+s: \{'loss': ([\d.]+)", log)


def test_worker_shards_hold_every_crop_once() -> None:
    import numpy as np

    from training.data import Arrays, shard

    arrays = Arrays(
        crops=np.arange(7 * 2).reshape(7, 2).astype(np.uint8),
        labels=np.array([0, 0, 0, 1, 1, 2, 2], np.int32),
        keys=["a", "b", "c"],
        files=[f"f{i}" for i in range(7)],
    )
    parts = [shard(arrays, i, 3) for i in range(3)]
    assert [len(p.labels) for p in parts] == [3, 2, 2]
    assert sorted(f for p in parts for f in p.files) == arrays.files
    assert all(p.keys == arrays.keys for p in parts)  # every worker trains every class
    for p in parts:
        rows = [int(r[0]) // 2 for r in p.crops]  # crops stay with their labels and files
        assert [arrays.labels[r] for r in rows] == p.labels.tolist()
        assert [f"f{r}" for r in rows] == p.files


@pytest.mark.subprocess
def test_launcher_is_executable_strict_bash() -> None:
    assert os.access(LAUNCHER, os.X_OK)
    text = LAUNCHER.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    res = subprocess.run(["bash", "-n", str(LAUNCHER)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_tf_config_roles() -> None:
    assert cluster_from_env({}) == Cluster()
    assert not Cluster().multi_worker and Cluster().is_chief
    spec = {"worker": ["a:1", "b:1", "c:1"]}
    two = cluster_from_env(
        {"TF_CONFIG": json.dumps({"cluster": spec, "task": {"type": "worker", "index": 2}})}
    )
    assert (two.workers, two.is_chief, two.worker_rank, two.multi_worker) == (3, False, 2, True)
    zero = cluster_from_env(
        {"TF_CONFIG": json.dumps({"cluster": spec, "task": {"type": "worker", "index": 0}})}
    )
    assert zero.is_chief  # worker 0 leads a cluster without a chief task
    with_chief = {"chief": ["c:1"], "worker": ["a:1"]}
    w0 = cluster_from_env(
        {"TF_CONFIG": json.dumps({"cluster": with_chief, "task": {"type": "worker", "index": 0}})}
    )
    assert (w0.workers, w0.is_chief, w0.worker_rank) == (2, False, 1)
    chief = cluster_from_env(
        {"TF_CONFIG": json.dumps({"cluster": with_chief, "task": {"type": "chief", "index": 0}})}
    )
    assert chief.is_chief and chief.worker_rank == 0
    for bad in (
        "not json",
        json.dumps({"cluster": spec}),
        json.dumps({"cluster": spec, "task": {"type": "ps", "index": 0}}),
        json.dumps({"cluster": spec, "task": {"type": "worker", "index": 3}}),
    ):
        with pytest.raises(ValueError):
            cluster_from_env({"TF_CONFIG": bad})


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_workers_train_the_model_one_worker_trains(
    prepared_cache: Path, mini_config: Path, mini_data_root: Path, tmp_path: Path
) -> None:
    import numpy as np
    import tensorflow as tf

    from training.cli import main

    data = _data_args(mini_config, mini_data_root, prepared_cache)
    same_batches = [
        *("--set", "train.augment=false", "--set", "train.shuffle_buffer=1"),
        *("--set", "model.freeze_bn=true"),
    ]
    env = _env(tmp_path / "tmp")
    one, two = tmp_path / "one", tmp_path / "two"
    solo = subprocess.run(
        [sys.executable, "-m", "training", "train", *data, *same_batches, "--run-dir", str(one)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert solo.returncode == 0, solo.stderr[-3000:]
    started = time.monotonic()
    proc = _launch(
        [
            *("-n", "2", "-r", "0", "-l", str(tmp_path / "logs"), "--"),
            *(*data, *same_batches, "--run-dir", str(two)),
        ],
        env,
        tmp_path / "launcher.out",
    )
    rc = _finish(proc, timeout=600)
    logs = [(tmp_path / "logs" / f"worker-{i}.log").read_text() for i in (0, 1)]
    assert rc == 0, (tmp_path / "launcher.out").read_text() + logs[0][-3000:] + logs[1][-3000:]
    print(f"two-worker tiny run: {time.monotonic() - started:.0f}s")

    # one synchronous job: both workers report the same globally averaged loss each epoch,
    # and it is the one worker's loss (the same global batches, the same steps)
    losses = _epoch_losses(logs[0])
    assert len(losses) == 2 and losses == _epoch_losses(logs[1])
    np.testing.assert_allclose(
        [float(x) for x in losses], [float(x) for x in _epoch_losses(solo.stderr)], rtol=1e-3
    )
    # each worker fed its own half of the training crops
    shares = [re.findall(r"input pipeline \d of 2: (\d+) of (\d+) training crops", g) for g in logs]
    assert all(len(s) == 1 for s in shares)
    total = int(shares[0][0][1])
    assert int(shares[0][0][0]) + int(shares[1][0][0]) == total
    assert abs(int(shares[0][0][0]) - int(shares[1][0][0])) <= 1
    assert "chief: writes the run directory" in logs[0] and "writes a temp dir" in logs[1]

    # only the chief wrote a run directory; the other worker's temp dir is gone
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert list((tmp_path / "tmp").glob("faceid-train-*")) == []
    info1 = json.loads((one / "training_info.json").read_text())
    info2 = json.loads((two / "training_info.json").read_text())
    assert info2["strategy"] == "MultiWorkerMirroredStrategy" and info2["replicas"] == 2
    assert info1["distribution"]["workers"] == 1
    d2 = info2["distribution"]
    assert (d2["workers"], d2["per_worker_batch"], d2["per_replica_batch"]) == (2, 16, 16)
    assert d2["global_batch"] == info1["distribution"]["global_batch"] == 32
    assert d2["learning_rate"] == info1["distribution"]["learning_rate"]
    assert info2["epochs_run"] == info1["epochs_run"] == 2

    # export both: same card (but for how they were trained) and the same signature
    cards, signatures, evaluations, embeddings = [], [], [], []
    with np.load(prepared_cache / "orl" / "s2.npz") as z:
        crops = tf.constant(z["crops"][:8])
    for run in (one, two):
        store = tmp_path / f"store-{run.name}"
        args = ["export", "--run-dir", str(run), "--name", "tiny", "--version", "1"]
        assert main([*args, "--model-store", str(store), *data[2:]]) == 0
        model_dir = store / "tiny" / "1"
        cards.append(json.loads((model_dir / "model_card.json").read_text()))
        fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
        signatures.append((fn.structured_input_signature, fn.structured_outputs))
        embeddings.append(fn(images=crops)["embedding"].numpy())
        evaluations.append(json.loads((model_dir / "evaluation.json").read_text()))
    assert signatures[0] == signatures[1]
    assert cards[0].keys() == cards[1].keys()
    for key in cards[0]:
        if key not in ("training", "threshold", "metrics", "created", "created_at"):
            assert cards[0][key] == cards[1][key], key
    assert cards[1]["training"]["distribution"]["workers"] == 2

    # the same model, up to the order of floating-point sums: the same embeddings, and an
    # evaluation within that noise (a near-tie pair may change side of a threshold)
    assert np.min(np.sum(embeddings[0] * embeddings[1], axis=1)) > 0.999
    v1, v2 = (e["validation"]["verification"] for e in evaluations)
    print(
        f"validation accuracy / AUC: one worker {v1['accuracy']:.4f} / {v1['auc']:.4f}, "
        f"two {v2['accuracy']:.4f} / {v2['auc']:.4f}"
    )
    assert abs(v1["accuracy"] - v2["accuracy"]) <= 0.02
    assert abs(v1["auc"] - v2["auc"]) <= 0.01
    assert abs(cards[0]["threshold"] - cards[1]["threshold"]) <= 0.01


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_killed_worker_is_restarted_and_resumes_from_the_backup(
    prepared_cache: Path, mini_config: Path, mini_data_root: Path, tmp_path: Path
) -> None:
    data = _data_args(mini_config, mini_data_root, prepared_cache)
    run, logs = tmp_path / "run", tmp_path / "logs"
    proc = _launch(
        [
            *("-n", "2", "-r", "2", "-l", str(logs), "--"),
            *data,
            *("--run-dir", str(run), "--set", "train.epochs=3"),
            *("--set", "train.steps_per_epoch=20"),
        ],
        _env(tmp_path / "tmp"),
        tmp_path / "launcher.out",
    )
    try:
        # wait until worker 1 is into the second epoch, then kill it
        deadline = time.monotonic() + 420
        worker1 = logs / "worker-1.log"
        while "epoch 2/3 step" not in (worker1.read_text() if worker1.exists() else ""):
            assert proc.poll() is None, (tmp_path / "launcher.out").read_text()
            assert time.monotonic() < deadline, "worker 1 never reached epoch 2"
            time.sleep(0.2)
        backed_up = json.loads((run / "checkpoints" / "training_metadata.json").read_text())
        os.kill(int((logs / "worker-1.pid").read_text()), signal.SIGKILL)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    rc = _finish(proc, timeout=480)
    launcher = (tmp_path / "launcher.out").read_text()
    texts = [(logs / f"worker-{i}.log").read_text() for i in (0, 1)]
    assert rc == 0, launcher + texts[0][-3000:] + texts[1][-3000:]

    done = backed_up["epoch"]
    assert done >= 1  # the kill landed after the first epoch's backup, within the second
    assert "worker 1: exit 137, restart 1 of 2" in launcher
    # both workers came back and restored the chief's backup, not a fresh start
    restored = f"{done} epoch(s) done, continuing at epoch {done + 1}"
    for text in texts:
        assert text.count("=== worker") == 2, text[-3000:]
        assert restored in text
    rows = (run / "train.log.csv").read_text().strip().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["0", "1", "2"]
    info = json.loads((run / "training_info.json").read_text())
    assert info["epochs_run"] == 3 - done
    final = json.loads((run / "checkpoints" / "training_metadata.json").read_text())
    assert final["epoch"] == 3
    assert (run / "final.weights.h5").exists() and (run / "best.weights.h5").exists()
    # SIGKILL leaves the killed attempt's temp dir (in a TFJob it goes with its pod); the
    # restarted attempt removed its own
    assert len(list((tmp_path / "tmp").glob("faceid-train-*"))) <= 1
