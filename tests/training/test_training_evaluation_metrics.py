"""Verification / identification metrics on constructed scores with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data import Identity
from training.evaluate import (
    accuracy_at,
    evaluate,
    kfold_accuracy,
    lfw_pair_scores,
    open_set_identification,
    roc_auc,
    tar_at_far,
    verification_metrics,
)


def test_auc_equals_the_mann_whitney_statistic() -> None:
    rng = np.random.default_rng(0)
    gen, imp = rng.normal(0.6, 0.2, 300), rng.normal(0.1, 0.2, 500)
    scores = np.r_[gen, imp]
    same = np.r_[np.ones(300, bool), np.zeros(500, bool)]
    expected = (gen[:, None] > imp[None, :]).mean()
    assert roc_auc(scores, same) == pytest.approx(expected, abs=1e-9)


def test_tar_at_far_allows_at_most_the_target_share_of_impostors() -> None:
    imp = np.linspace(-0.5, 0.5, 1000)
    gen = np.linspace(0.3, 0.9, 100)
    scores, same = np.r_[gen, imp], np.r_[np.ones(100, bool), np.zeros(1000, bool)]
    tar, thr = tar_at_far(scores, same, 1e-2)
    assert np.sum(imp >= thr) == 10  # FAR exactly 1 %
    assert tar == pytest.approx(np.mean(gen >= thr))


def test_kfold_accuracy_is_perfect_on_separable_scores_and_chance_on_noise() -> None:
    same = np.tile([True, False], 300)
    scores = np.where(same, 0.8, 0.2) + np.random.default_rng(1).normal(0, 0.05, 600)
    assert kfold_accuracy(scores, same)["accuracy"] == 1.0
    noise = np.random.default_rng(2).normal(size=600)
    assert verification_metrics(noise, same)["accuracy"] < 0.6


def _clustered(
    n_people: int, per: int, noise: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, 64))
    labels = np.repeat(np.arange(n_people), per)
    emb = centres[labels] + noise * rng.normal(size=(len(labels), 64))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), labels


def test_open_set_identification_on_separable_and_random_embeddings() -> None:
    emb, labels = _clustered(40, 4, 0.2)
    good = open_set_identification(emb, labels)
    assert good["gallery"] == 20 and good["mated_probes"] == 60 and good["nonmated_probes"] == 80
    assert good["rank1"] == 1.0 and good["fnir_at_fpir_1e-02"] == 0.0
    emb_r = np.random.default_rng(3).normal(size=emb.shape)
    bad = open_set_identification(emb_r / np.linalg.norm(emb_r, axis=1, keepdims=True), labels)
    assert bad["rank1"] < 0.3 and bad["fnir_at_fpir_1e-02"] > 0.7


def test_lfw_pairs_with_a_missing_face_count_as_errors(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("2\nA\t1\t2\nB\t1\t2\nA\t1\tB\t1\nA\t2\tB\t2\n")
    crops = np.zeros((2, 112, 112, 3), np.uint8)
    ids = {
        "lfw/A": Identity("lfw/A", crops, ["A_0001.jpg", "A_0002.jpg"]),
        "lfw/B": Identity("lfw/B", crops[:1], ["B_0001.jpg"]),  # B_0002 had no face
    }
    vecs = {0: [1.0, 0.0], 1: [0.0, 1.0]}

    def embed(x: np.ndarray) -> np.ndarray:  # A → e0, B → e1 (by call order below)
        return np.array([vecs[0], vecs[0], vecs[1]])[: len(x)]

    scores, same, missing = lfw_pair_scores(pairs, ids, embed)
    assert missing == 2 and same.tolist() == [True, True, False, False]
    assert scores[0] == pytest.approx(1.0) and scores[2] == pytest.approx(0.0)
    assert np.isnan(scores[1]) and np.isnan(scores[3])
    # the pairs with B_0002 are wrong at any threshold → best possible accuracy 50 %
    assert all(accuracy_at(scores, same, t) == 0.5 for t in (0.01, 0.5, 0.99))
    # ...but for TAR@FAR they are rejected, so they cannot use up the impostor budget
    metrics = verification_metrics(scores, same, folds=2, interleave=False)
    assert metrics["tar_at_far_1e-02"] == pytest.approx(0.5)


def test_evaluate_writes_json_and_pictures(tmp_path: Path) -> None:
    emb, _labels = _clustered(12, 5, 0.3)
    ids = {}
    for p in range(12):
        crops = np.zeros((5, 112, 112, 3), np.uint8)
        crops[:, 0, 0, 0] = np.arange(5) + 10 * p  # encodes the row index for the fake embedder
        ids[f"x/{p}"] = Identity(f"x/{p}", crops, [f"{i}.jpg" for i in range(5)])

    def embed(x: np.ndarray) -> np.ndarray:
        return emb[x[:, 0, 0, 0].astype(int) // 10 * 5 + x[:, 0, 0, 0].astype(int) % 10]

    result = evaluate(embed, ids, list(ids), out_dir=tmp_path, far_target=1e-2)
    assert (tmp_path / "evaluation.json").exists() and (tmp_path / "roc.png").stat().st_size > 1000
    assert (tmp_path / "histogram_validation.png").exists()
    v = result["validation"]
    assert v["identities"] == 12 and v["images"] == 60
    assert v["verification"]["accuracy"] > 0.95 and v["identification"]["rank1"] > 0.9
    assert -1.0 <= result["threshold"]["cosine"] <= 1.0
