"""GalleryIndex with the approximate (HNSW) index: recall, exact scores, writes, threshold."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from app.gallery.search.ann import AnnIndex
from app.gallery.search.index import GalleryIndex
from app.gallery.service import GalleryService
from app.gallery.storage.sqlite import GalleryStore

DIM = 64
FACES_PER_ID = 2


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n_faces: int, seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Unit faces, FACES_PER_ID per identity around random centres: (faces, identities,
    centres)."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((n_faces // FACES_PER_ID, DIM)))
    codes = np.repeat(np.arange(len(centres)), FACES_PER_ID)
    faces = _unit(centres[codes] + 0.08 * rng.standard_normal((n_faces, DIM)))
    return faces, [f"id{c}" for c in codes.tolist()], centres


def _queries(centres: np.ndarray, n: int, seed: int) -> np.ndarray:
    """New faces of enrolled identities."""
    rng = np.random.default_rng(seed)
    picked = centres[rng.integers(0, len(centres), n)]
    return _unit(picked + 0.1 * rng.standard_normal((n, DIM)))


def _built(n_faces: int, seed: int) -> tuple[GalleryIndex, np.ndarray, list[str], np.ndarray]:
    """An index over ``_clustered`` faces with its graph built: (index, faces, identities,
    centres)."""
    faces, identities, centres = _clustered(n_faces, seed)
    index = GalleryIndex(DIM, ann_min_faces=1000)
    index.add_many([f"f{i}" for i in range(n_faces)], identities, faces)
    assert index.wait_for_ann(timeout=60)
    return index, faces, identities, centres


@pytest.fixture
def ann_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts searches answered through the approximate index."""
    calls: list[int] = []
    real = AnnIndex.try_search

    def spy(
        self: AnnIndex, queries: np.ndarray, count: int, wait_s: float
    ) -> tuple[int, np.ndarray] | None:
        found = real(self, queries, count, wait_s)
        if found is not None:
            calls.append(len(queries))
        return found

    monkeypatch.setattr(AnnIndex, "try_search", spy)
    yield calls


def _graph_matches_rows(index: GalleryIndex) -> None:
    """Every usearch key is the row of the face whose vector it holds."""
    ann = index._ann
    assert ann is not None and ann.rows == len(index)
    assert len(ann._index) == len(index)
    stored = np.asarray(ann._index.get(np.arange(len(index), dtype=np.uint64)), np.float32)
    cosines = np.sum(_unit(stored) * index._emb[: len(index)], axis=1)
    assert cosines.min() > 0.98  # 8-bit copies of the same vectors


def test_recall_and_exact_scores_against_exact_search(ann_calls: list[int]) -> None:
    index, faces, identities, centres = _built(10_000, seed=0)
    exact = GalleryIndex(DIM)
    exact.add_many([f"f{i}" for i in range(10_000)], identities, faces)
    queries = _queries(centres, 400, seed=1)
    got = index.search(queries, top_k=5)
    want = exact.search(queries, top_k=5)
    assert sum(ann_calls) == 400  # answered by the graph, not the exact path
    recall = np.mean([g[0][0] == w[0][0] for g, w in zip(got, want, strict=True)])
    assert recall >= 0.99
    # Returned scores are exact: each identity's best-face cosine.
    owner = np.array(identities)
    for query, hits in zip(queries[:50], got[:50], strict=True):
        assert len(hits) == 5 and len({name for name, _ in hits}) == 5
        scores = faces @ query
        for name, score in hits:
            best = scores[owner == name].max()
            assert score == pytest.approx(float(best), abs=1e-6)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_removals_and_additions_after_the_build(ann_calls: list[int]) -> None:
    index, _, _, centres = _built(4_000, seed=2)
    rng = np.random.default_rng(3)
    # Remove whole identities and single faces: rows are compacted, keys renamed.
    query = _queries(centres[:1], 1, seed=4)
    assert index.search(query, top_k=1)[0][0][0] == "id0"
    assert index.remove_identity("id0") == 2
    assert all(name != "id0" for name, _ in index.search(query, top_k=10)[0])
    for i in rng.choice(np.arange(2, 4_000), 300, replace=False).tolist():
        assert index.remove_face(f"f{i}")
    assert len(index) == 3_698
    _graph_matches_rows(index)
    # A new face is searchable at once (scored exactly until inserted), then in the graph.
    new = _unit(rng.standard_normal((1, DIM)))
    index.add("new", "Newcomer", new[0])
    assert index.search(new, top_k=1)[0][0] == ("Newcomer", pytest.approx(1.0, abs=1e-5))
    assert index.wait_for_ann(timeout=30)
    _graph_matches_rows(index)
    assert index.search(new, top_k=1)[0][0] == ("Newcomer", pytest.approx(1.0, abs=1e-5))
    assert ann_calls  # all of the above went through the graph


def test_removals_while_the_graph_is_being_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Removing a face inside the built part whose replacement (the last row) is not yet
    in the graph, and faces past the built part, keeps keys and rows in step."""
    first_chunk_done, resume = threading.Event(), threading.Event()
    real = AnnIndex.insert_claimed

    def paused(self: AnnIndex, start: int, vectors: np.ndarray) -> None:
        real(self, start, vectors)
        first_chunk_done.set()
        assert resume.wait(30)

    monkeypatch.setattr(AnnIndex, "insert_claimed", paused)
    faces, identities, _ = _clustered(3_000, seed=5)
    index = GalleryIndex(DIM, ann_min_faces=1000)
    index.add_many([f"f{i}" for i in range(3_000)], identities, faces)
    assert first_chunk_done.wait(30)
    assert index._ann is not None and 0 < index._ann.rows < 1_000
    assert index.remove_face("f5")  # in the graph; the last face (not yet) moves in
    assert index.remove_face("f2500")  # not in the graph yet
    assert index.remove_identity("id100") == 2  # f200, f201
    resume.set()
    assert index.wait_for_ann(timeout=60)
    assert len(index) == 2_996
    _graph_matches_rows(index)


def test_exact_path_below_the_threshold(ann_calls: list[int]) -> None:
    faces, identities, centres = _clustered(3_000, seed=6)
    index = GalleryIndex(DIM, ann_min_faces=5_000)
    exact = GalleryIndex(DIM)
    for ix in (index, exact):
        ix.add_many([f"f{i}" for i in range(3_000)], identities, faces)
    assert index._ann is None and index.ann_faces == 0 and index.wait_for_ann(0) is False
    queries = _queries(centres, 20, seed=7)
    assert index.search(queries, top_k=5) == exact.search(queries, top_k=5)
    assert ann_calls == []
    # Disabled (0): no graph however large the gallery.
    off = GalleryIndex(DIM, ann_min_faces=0)
    off.add_many([f"f{i}" for i in range(3_000)], identities, faces)
    assert off._ann is None


def test_concurrent_writes_searches_and_build_stay_consistent() -> None:
    faces, identities, _ = _clustered(3_000, seed=8)
    index = GalleryIndex(DIM, ann_min_faces=1000)
    index.add_many([f"f{i}" for i in range(2_000)], identities[:2_000], faces[:2_000])
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            for i in range(start, start + 250):
                index.add(f"f{i}", identities[i], faces[i])
                if i % 3 == 0:
                    assert index.remove_face(f"f{i - 2_000}")
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(100):
                for hits in index.search(faces[2_000:2_004], top_k=5):
                    assert len({name for name, _ in hits}) == len(hits) == 5
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(2_000, 3_000, 250)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert index.wait_for_ann(timeout=60)
    assert len(index) == 3_000 - sum(i % 3 == 0 for i in range(2_000, 3_000))
    _graph_matches_rows(index)
    [(name, score)] = index.search(faces[2_999:], top_k=1)[0]
    assert name == identities[2_999] and score == pytest.approx(1.0, abs=1e-5)


def test_service_builds_the_graph_from_the_store_in_the_background(tmp_path: Path) -> None:
    faces, identities, _ = _clustered(40, seed=9)
    db = tmp_path / "gallery.sqlite3"
    with closing(GalleryStore(db, "m/1", DIM)) as store:
        for i in range(40):
            store.add_face(f"f{i}", identities[i], faces[i], "2026-01-01T00:00:00Z")
    service = GalleryService.open(GalleryStore(db, "m/1", DIM), ann_min_faces=30)
    assert service.index.wait_for_ann(timeout=30) and service.index.ann_faces == 40
    enrolled = service.enroll("Newcomer", faces[0] + 0.01)
    assert service.index.search(faces[:1] + 0.01, top_k=1)[0][0][0] == "Newcomer"
    assert service.delete_face("Newcomer", enrolled.face_id)
    service.close()
    assert service.index.ann_faces == 0  # the graph is dropped; searches are exact
    assert service.index.search(faces[:1], top_k=1)[0][0] == (identities[0], pytest.approx(1.0))
