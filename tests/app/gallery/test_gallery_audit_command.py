"""``python -m app.gallery audit`` on a stored gallery (tiny model, synthetic embeddings):
the same findings as the route, as lines or as JSON, per collection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from faceid_testkit import TINY_DIM

from app.admin.cli import main
from app.gallery.records import new_face, utc_now
from app.gallery.storage import open_storage
from app.inference.model import load_card


def _gallery(model_dir: Path, data_dir: Path) -> dict[str, list[str]]:
    """Five people far apart in ``front``; ``p0 again`` is p0 under a second name."""
    card = load_card(model_dir)
    store = open_storage(None, data_dir / "gallery.sqlite3", card.model_id, card.embedding_dim)
    rng = np.random.default_rng(0)
    ids: dict[str, list[str]] = {}
    rows = []
    people = [(f"p{i}", i, 3) for i in range(5)] + [("p0 again", 0, 2)]
    for name, axis, count in people:
        for _ in range(count):
            vector = np.eye(TINY_DIM)[axis] + 0.05 * rng.normal(size=TINY_DIM)
            row = new_face(
                name,
                vector.astype(np.float32),
                created_at=utc_now(),
                content_hash=None,
                collection="front",
            )
            rows.append(row)
            ids.setdefault(name, []).append(row.face_id)
    store.add_faces(rows)
    store.close()
    return ids


def _run(monkeypatch: pytest.MonkeyPatch, model_dir: Path, data_dir: Path, *argv: str) -> int:
    monkeypatch.setenv("FACEID_MODEL_DIR", str(model_dir))
    monkeypatch.setenv("FACEID_DATA_DIR", str(data_dir))
    monkeypatch.setenv("FACEID_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("FACEID_THRESHOLD", "0.9")
    return main(["--quiet", *argv])


def test_the_audit_command_names_the_duplicate(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    ids = _gallery(tiny_model_dir, tmp_path)
    assert (
        _run(monkeypatch, tiny_model_dir, tmp_path, "audit", "--collection", "front", "--json") == 0
    )
    body = json.loads(capsys.readouterr().out)
    assert body["collection"] == "front" and body["identities"] == 6 and body["faces"] == 17
    assert body["identification"] == {"value": 0.9, "source": "setting"}
    [dup] = body["duplicates"]
    assert (dup["merge_from"], dup["merge_into"], dup["action"]) == ("p0 again", "p0", "merge")
    named = {f["face_id"] for f in dup["faces"] + dup["other_faces"]}
    assert named == set(ids["p0"]) | set(ids["p0 again"])
    assert body["misfiled"] == []
    assert body["population"]["status"] == "too_few_identities"
    assert _run(monkeypatch, tiny_model_dir, tmp_path, "audit", "--collection", "front") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("6 identities, 17 faces, threshold 0.9000")
    assert any(
        line.startswith("duplicate: ") and "merge 'p0 again' into 'p0'" in line for line in lines
    )
    assert lines[-1].startswith("calibration check: too_few_identities")
    # the default collection is empty
    assert _run(monkeypatch, tiny_model_dir, tmp_path, "audit", "--json") == 0
    empty = json.loads(capsys.readouterr().out)
    assert empty["faces"] == 0 and empty["duplicates"] == []
