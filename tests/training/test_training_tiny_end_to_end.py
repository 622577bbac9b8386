"""`tiny` end to end on ORL (+ a miniature LFW): prepare → train → resume → evaluate → export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
def test_tiny_prepare_train_evaluate_export(
    prepared_cache: Path, mini_config: Path, mini_data_root: Path, tmp_path: Path
) -> None:
    import tensorflow as tf

    from faces import PREPROCESSING_VERSION
    from training.cli import main

    # prepare (done by the fixture through the CLI): per-dataset reports and a resumable cache
    orl = json.loads((prepared_cache / "orl.report.json").read_text())
    assert orl["identities"] == 20 and orl["images"] == 200
    assert orl["used"] >= 195 and orl["used"] + orl["no_face"] + orl["undecodable"] == 200
    with np.load(prepared_cache / "orl" / "s1.npz") as z:
        assert z["crops"].shape[1:] == (112, 112, 3) and z["crops"].dtype == np.uint8
        assert len(z["files"]) == len(z["crops"]) == len(z["landmarks"])
    lfw = json.loads((prepared_cache / "lfw.report.json").read_text())
    assert lfw["identities"] == 6

    common = ["--data-root", str(mini_data_root), "--cache-dir", str(prepared_cache)]
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(mini_config), "--run-dir", str(run_dir), *common]) == 0
    split = json.loads((run_dir / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"])
    assert all(k in split["val"] for k in split["val"] if k.startswith("lfw/"))
    assert not any(k.startswith("lfw/") for k in split["train"])  # pair people never train
    best = json.loads((run_dir / "best.json").read_text())
    assert 0.0 <= best["val_accuracy"] <= 1.0 and "val_lfw_accuracy" in best
    rows = (run_dir / "train.log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header + 2 epochs

    # resume: one more epoch continues from the checkpoint, not from scratch
    assert (
        main(
            [
                "train",
                "--config",
                str(mini_config),
                "--run-dir",
                str(run_dir),
                "--resume",
                "--set",
                "train.epochs=3",
                *common,
            ]
        )
        == 0
    )
    rows = (run_dir / "train.log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]

    assert main(["evaluate", "--run-dir", str(run_dir), *common]) == 0
    ev = json.loads((run_dir / "evaluation" / "evaluation.json").read_text())
    assert ev["lfw_pairs"]["pairs"] == 12 and "missing_pairs" in ev["lfw_pairs"]
    assert ev["validation"]["identification"]["mated_probes"] > 0
    for key in ("accuracy", "auc", "tar_at_far_1e-02", "tar_at_far_1e-03"):
        assert key in ev["validation"]["verification"] and key in ev["lfw_pairs"]
    assert (run_dir / "evaluation" / "roc.png").exists()

    store = tmp_path / "model_store"
    assert (
        main(
            [
                "export",
                "--run-dir",
                str(run_dir),
                "--name",
                "tiny",
                "--version",
                "1",
                "--model-store",
                str(store),
                *common,
            ]
        )
        == 0
    )
    model_dir = store / "tiny" / "1"
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["preprocessing_version"] == PREPROCESSING_VERSION
    assert card["embedding_dim"] == 128 and card["threshold"] == ev["threshold"]["cosine"]
    assert card["recipe"] == "scratch" and card["pretrained"] is None
    assert card["training_data"]["datasets"]["orl"]["counts"]["train_identities"] > 0
    assert "Olivetti" in card["training_data"]["datasets"]["orl"]["citation"]
    assert (model_dir / "roc.png").exists() and (model_dir / "evaluation.json").exists()

    # the exported model reproduces the run's validation embeddings
    from training.config import load_config
    from training.evaluate import keras_embed_fn
    from training.train import build_backbone_from_config

    backbone = build_backbone_from_config(load_config(run_dir / "config.yaml"))
    backbone.load_weights(str(run_dir / "best.weights.h5"))
    with np.load(prepared_cache / "orl" / "s2.npz") as z:
        crops = z["crops"][:4]
    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    np.testing.assert_allclose(
        fn(images=tf.constant(crops))["embedding"].numpy(),
        keras_embed_fn(backbone)(crops),
        atol=1e-5,
    )
