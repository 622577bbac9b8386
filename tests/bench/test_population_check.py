"""The MODEL.md population experiment (``bench.population_check``) end to end on a
synthetic embedding cache laid out as ``bench.population_embed`` writes it: the check stays
quiet on people drawn like the card's and flags the same people with the synthetic heavier
tail, and the achieved FPIR agrees in direction; the picture and the table are written."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import population_check as experiment

DIM = 24


def _write(cache: Path, dataset: str, people: int, faces: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = np.repeat(centres, faces, axis=0) + 0.1 * rng.normal(size=(people * faces, DIM))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    names = [f"{dataset}{i // faces}" for i in range(people * faces)]
    (cache / dataset).mkdir(parents=True)
    np.savez(
        cache / dataset / "chunk-0000.npz",
        people=np.array(names),
        paths=np.array([f"{dataset}/{n}/{i}.jpg" for i, n in enumerate(names)]),
        embeddings=emb.astype(np.float32),
        quality=np.ones(len(names), np.float32),
    )


def test_the_experiment_tells_a_heavier_tail_from_a_matching_one(tmp_path: Path) -> None:
    _write(tmp_path, "lfw", 700, 6, 0)
    _write(tmp_path, "celeba", 50, 4, 1)
    _write(tmp_path, "orl", 40, 4, 2)
    conditions = [
        experiment.Condition("lfw", 300, 0.05),
        experiment.Condition("lfw", 300, 0.05, pull=0.6),
        experiment.Condition("lfw", 30, 0.05),
    ]
    result = experiment.run(tmp_path, repeats=2, seed=0, conditions=conditions)
    same, heavier, small = result["rows"]
    assert same["ok"] == 1.0 and heavier["heavier"] == 1.0 and small["too_few"] == 1.0
    assert heavier["achieved_fpir_per_person"] > 2 * same["achieved_fpir_per_person"]
    assert same["achieved_fpir"] < 2 * 0.05
    assert heavier["deployment_fitted"] == 1.0
    assert heavier["deployment_fpir"] < heavier["achieved_fpir"]  # its own tail helps
    experiment.picture(result, tmp_path / "picture.png")
    assert (tmp_path / "picture.png").stat().st_size > 10_000
    table = experiment.markdown(result)
    assert table.count("\n") == 2 + len(conditions) - 1
