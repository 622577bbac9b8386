"""The open-set calibration protocol (training/calibrate.py): data fixes and gallery sizes."""

from __future__ import annotations

import json

import numpy as np

from training.calibrate import DATA_FIXES, Faces, apply_data_fixes, open_set_protocol


def _faces(people: int, per_person: int, dim: int = 32, seed: int = 0) -> Faces:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, dim))
    labels = np.repeat(np.arange(people), per_person)
    emb = centres[labels] + 0.5 * rng.standard_normal((len(labels), dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return Faces(emb.astype(np.float32), labels, np.ones(len(labels), dtype=np.float32))


def test_data_fixes_merge_one_persons_identities_and_drop_photos_of_someone_else() -> None:
    faces = _faces(4, 3)
    keys = ["lfw/A", "lfw/B", "celeba/1", "celeba/2"]
    files = [f"{k}/{i}.jpg" for k in keys for i in range(3)]
    fixes = {
        "same_person": [["lfw/A", "celeba/2"], ["lfw/Nobody", "lfw/B"]],
        "largest_face_is_someone_else": ["celeba/1/0.jpg", "lfw/B/2.jpg", "lfw/Z/9.jpg"],
    }
    fixed, changed = apply_data_fixes(faces, keys, files, fixes)
    assert changed == {"faces_relabelled": 3, "faces_dropped": 2}
    assert fixed.labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 0, 0, 0]
    kept = [f for f in files if f not in {"celeba/1/0.jpg", "lfw/B/2.jpg"}]
    assert np.array_equal(fixed.embeddings, faces.embeddings[[files.index(f) for f in kept]])
    assert len(fixed.quality) == 10


def test_the_shipped_fixes_name_identities_and_photos_in_the_cache_layout() -> None:
    fixes = json.loads(DATA_FIXES.read_text(encoding="utf-8"))
    for group in fixes["same_person"]:
        assert len(group) >= 2 and all(k.count("/") == 1 for k in group)
    for photo in fixes["largest_face_is_someone_else"]:
        dataset, identity, name = photo.split("/")
        assert dataset in {"lfw", "celeba", "orl"} and name.startswith(identity)


def test_the_protocol_builds_the_largest_gallery_asked_for_when_the_people_suffice() -> None:
    faces = _faces(2000, 4)
    result = open_set_protocol(
        faces, sizes=(10, 1000), template_counts=(1,), targets=(0.01,), repeats=1
    )
    assert result["calibration_people"] + result["test_people"] == 2000
    assert result["test_people"] >= 1334  # 1,000 enrolled and a quarter as many strangers
    sizes = {row["identities"] for row in result["rows"]}
    assert 1000 in sizes and 10 in sizes
    for row in result["rows"]:  # well-separated synthetic people: calibrated within 2x
        assert row["fpir"] <= 2 * row["target_fpir"] + 0.01


def test_calibrate_corrects_the_listed_label_errors_unless_told_not_to() -> None:
    from training.cli import build_parser

    parser = build_parser()
    default = parser.parse_args(["calibrate"])
    assert default.data_fixes == ""  # "" = the shipped training/data_fixes.json
    assert default.repeats == 100
    assert parser.parse_args(["calibrate", "--no-data-fixes"]).data_fixes is None
    assert parser.parse_args(["calibrate", "--data-fixes", "x.json"]).data_fixes == "x.json"
