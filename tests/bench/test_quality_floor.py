"""bench.quality_floor's scoring on constructed people with known answers: a refused
enrolment turns its person's probes into misses, a probe floor keeps a blurred stranger
from being named, and the accept-everything rule is the baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.quality_floor import KEYS, NOW, Photos, scenario

GOOD = [40.0, 100.0, 0.05, 0.999, 0.45]  # size, laplacian, pose, confidence, blur effect
BLURRED = [40.0, 3.0, 0.05, 0.999, 0.90]


def _write(cache: Path, name: str, photos: list[tuple[np.ndarray, list[float]]]) -> None:
    n = len(photos)
    emb = np.stack([e for e, _ in photos]).astype(np.float32)
    arrays = {
        "files": np.array([f"{name}_{i + 1:04d}.jpg" for i in range(n)]),
        "variant": np.array(["original"] * n),
        "found": np.ones(n, bool),
        "measures": np.array([m for _, m in photos], np.float32),
        "emb": emb,
        "emb_flip": emb,
        "emb_blur": emb,
    }
    assert set(arrays) == set(KEYS)
    np.savez(cache / f"{name}.npz", **arrays)  # type: ignore[arg-type]


@pytest.fixture
def photos(tmp_path: Path) -> Photos:
    axes = np.eye(8)
    # A and B enrol good photos; C's enrolment photo is blurred but still matches C
    _write(tmp_path, "A", [(axes[0], GOOD), (axes[0], GOOD)])
    _write(tmp_path, "B", [(axes[1], GOOD), (axes[1], GOOD)])
    _write(tmp_path, "C", [(axes[2], BLURRED), (axes[2], GOOD)])
    # strangers: one unlike anyone; one blurred photo that happens to look like A
    _write(tmp_path, "S1", [(axes[5], GOOD)])
    _write(tmp_path, "S2", [(axes[0], BLURRED)])
    selection = {"enrolled": ["A", "B", "C"], "strangers": ["S1", "S2"], "photos": {}}
    (tmp_path / "selection.json").write_text(json.dumps(selection))
    return Photos(tmp_path)


def _run(photos: Photos, enrol_rule: tuple, probe_rule: tuple) -> dict:
    e = np.array(["original"] * 3)
    s = np.array(["original"] * 2)
    return scenario(photos, e, e, s, enrol_rule, probe_rule, 0.01)


def test_accepting_every_face_names_everyone_and_the_stranger_who_looks_alike(
    photos: Photos,
) -> None:
    r = _run(photos, ((), 0.0), ((), 0.0))
    assert r["refused"] == 0 and r["mated_probes"] == 3
    assert r["rank1"] == 1.0 and r["fnir"] == 0.0
    assert r["fpir"] == 0.5 and r["wrong_answers"] == 1


def test_refusing_a_blurred_enrolment_turns_its_person_into_misses(photos: Photos) -> None:
    r = _run(photos, (NOW, 0.5), ((), 0.0))
    assert r["refused"] == 1
    assert r["fnir"] == pytest.approx(1 / 3) and r["rank1"] == pytest.approx(2 / 3)
    assert r["wrong_answers"] == 1  # the refusal prevented nothing


def test_a_probe_floor_keeps_the_blurred_stranger_unnamed(photos: Photos) -> None:
    r = _run(photos, ((), 0.0), (NOW, 0.2))
    assert r["fpir"] == 0.0 and r["wrong_answers"] == 0
    assert r["fnir"] == 0.0 and r["probes_refused"] == 0.0
    # the former Laplacian ramp reads the same faces the same way here
    assert _run(photos, ((), 0.0), (("laplacian",), 0.2))["fpir"] == 0.0
