"""GalleryStore (SQLite) and GalleryService: durability, erasure, model-version guard."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from app.domain_errors import StartupError
from app.gallery.service import GalleryService
from app.gallery.storage.sqlite import GalleryStore


def _vec(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def test_enrollments_survive_reopening_and_reload_into_the_index(tmp_path: Path) -> None:
    db = tmp_path / "g" / "gallery.sqlite3"
    service = GalleryService.open(GalleryStore(db, "m/1", 8))
    a = service.enroll("Ada Lovelace", _vec(1))
    service.enroll("Ada Lovelace", _vec(2))
    service.enroll("Émile Zola", _vec(3))
    service.close()

    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = [r[1] for r in conn.execute("PRAGMA table_info(faces)")]
    assert cols == [
        "face_id",
        "identity",
        "embedding",
        "model_version",
        "created_at",
        "content_hash",
        "crop",
        "collection",
        "quality",
    ]
    conn.close()

    reopened = GalleryService.open(GalleryStore(db, "m/1", 8))
    assert (reopened.identities, reopened.faces) == (2, 3)
    assert reopened.list_identities(10, 0) == ([("Ada Lovelace", 2), ("Émile Zola", 1)], 2)
    assert reopened.list_identities(1, 1) == ([("Émile Zola", 1)], 2)
    faces = reopened.faces_of("Ada Lovelace")
    assert faces[0].face_id == a.face_id and faces[0].model_version == "m/1"
    assert faces[0].created_at.endswith("Z")
    [[(who, score)]] = reopened.index.search(_vec(3)[None], top_k=1)
    assert who == "Émile Zola" and score == pytest.approx(1.0, abs=1e-6)
    reopened.close()


def test_erasure_removes_rows_from_store_and_index(tmp_path: Path) -> None:
    db = tmp_path / "gallery.sqlite3"
    service = GalleryService.open(GalleryStore(db, "m/1", 8))
    a1 = service.enroll("A", _vec(1))
    service.enroll("A", _vec(2))
    b = service.enroll("B", _vec(3))
    assert service.delete_face("A", b.face_id) is False  # face of another identity
    assert service.delete_face("A", a1.face_id) is True
    assert service.delete_identity("B") == 1
    assert service.delete_identity("B") == 0
    assert (service.identities, service.faces) == (1, 1)
    assert service.index.search(_vec(3)[None], top_k=5)[0][0][0] == "A"
    service.close()
    assert GalleryStore(db, "m/1", 8).count() == (1, 1)
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # erased rows leave no WAL copy


def test_gallery_made_by_another_model_refuses_to_open(tmp_path: Path) -> None:
    db = tmp_path / "gallery.sqlite3"
    store = GalleryStore(db, "faceid/1", 8)
    store.add_face("f1", "A", _vec(1), "2025-01-01T00:00:00Z")
    store.close()
    with pytest.raises(StartupError, match=r"faceid/1.*faceid/2|cannot be compared"):
        GalleryStore(db, "faceid/2", 8)
    assert GalleryStore(db, "faceid/1", 8).count() == (1, 1)


def test_wrong_embedding_size_is_rejected(tmp_path: Path) -> None:
    store = GalleryStore(tmp_path / "gallery.sqlite3", "m/1", 8)
    with pytest.raises(ValueError):
        store.add_face("f", "A", np.ones(4, np.float32), "2025-01-01T00:00:00Z")
    assert store.count() == (0, 0)
