"""GalleryIndex: exact top-k per identity, removals, thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.gallery.search.index import GalleryIndex


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _brute_force(emb, idents, queries, top_k):
    out = []
    for q in queries:
        best: dict[str, float] = {}
        for e, who in zip(emb, idents, strict=True):
            s = float(np.dot(q, e))
            best[who] = max(best.get(who, -2.0), s)
        out.append(sorted(best.items(), key=lambda kv: -kv[1])[:top_k])
    return out


def test_empty_index_returns_empty_lists() -> None:
    index = GalleryIndex(8)
    assert len(index) == 0 and index.identities == 0
    assert index.search(np.ones((3, 8), np.float32), top_k=5) == [[], [], []]


@pytest.mark.parametrize("top_k", [1, 3, 50])
def test_search_matches_brute_force_with_one_entry_per_identity(top_k: int) -> None:
    rng = np.random.default_rng(1)
    emb = _unit(rng, 400, 16)
    idents = [f"p{i % 37}" for i in range(400)]  # ~11 faces per identity
    index = GalleryIndex(16)
    index.add_many([f"f{i}" for i in range(400)], idents, emb)
    queries = _unit(rng, 5, 16)
    got = index.search(queries, top_k=top_k)
    want = _brute_force(emb, idents, queries, top_k)
    assert len(got) == 5
    for g, w in zip(got, want, strict=True):
        assert [name for name, _ in g] == [name for name, _ in w]
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=1e-5, atol=1e-6)
        assert len({name for name, _ in g}) == len(g) == min(top_k, 37)


def test_embeddings_are_normalised_so_scores_are_cosine() -> None:
    index = GalleryIndex(3)
    index.add("a", "Alice", np.array([3.0, 0.0, 0.0]))
    index.add("b", "Bob", np.array([0.0, 5.0, 0.0]))
    [[(who, score), (other, low)]] = index.search(np.array([[2.0, 0.1, 0.0]]), top_k=2)
    assert who == "Alice" and score == pytest.approx(0.99875, abs=1e-4)
    assert other == "Bob" and low < 0.1


def test_remove_face_and_identity_keep_the_rest_searchable() -> None:
    rng = np.random.default_rng(2)
    emb = _unit(rng, 6, 8)
    index = GalleryIndex(8)
    index.add_many(["a1", "a2", "b1", "c1", "c2", "c3"], ["A", "A", "B", "C", "C", "C"], emb)
    assert (len(index), index.identities) == (6, 3)
    assert index.remove_face("a1") is True
    assert index.remove_face("a1") is False
    assert index.remove_identity("C") == 3
    assert index.remove_identity("C") == 0
    assert (len(index), index.identities) == (2, 2)
    assert index.faces_per_identity() == {"A": 1, "B": 1}
    # Each remaining face is its own best match.
    [[(who_a2, s_a2)], [(who_b1, s_b1)]] = index.search(emb[[1, 2]], top_k=1)
    assert (who_a2, who_b1) == ("A", "B")
    assert s_a2 == pytest.approx(1.0) and s_b1 == pytest.approx(1.0)
    index.add("c9", "C", emb[5])
    assert index.search(emb[5:6], top_k=1)[0][0] == ("C", pytest.approx(1.0))


def test_duplicate_face_id_and_bad_shapes_are_rejected() -> None:
    index = GalleryIndex(4)
    index.add("x", "X", np.ones(4))
    with pytest.raises(ValueError):
        index.add("x", "Y", np.ones(4))
    with pytest.raises(ValueError):
        index.add_many(["y"], ["Y"], np.ones((1, 5)))
    with pytest.raises(ValueError):
        index.search(np.ones((1, 5)), top_k=1)
    with pytest.raises(ValueError):
        index.search(np.ones((1, 4)), top_k=0)
    assert len(index) == 1


def test_grows_past_initial_capacity_and_large_search_is_exact() -> None:
    rng = np.random.default_rng(3)
    n, dim = 20_000, 32
    emb = _unit(rng, n, dim)
    index = GalleryIndex(dim)
    index.add_many([str(i) for i in range(n)], [f"id{i // 2}" for i in range(n)], emb)
    assert len(index) == n and index.identities == n // 2
    results = index.search(emb[[0, 9_999, 19_999]], top_k=3)
    assert [r[0][0] for r in results] == ["id0", "id4999", "id9999"]
    assert all(r[0][1] == pytest.approx(1.0, abs=1e-5) for r in results)


def test_concurrent_adds_removes_and_searches_stay_consistent() -> None:
    rng = np.random.default_rng(4)
    emb = _unit(rng, 800, 16)
    index = GalleryIndex(16)
    errors: list[BaseException] = []

    def writer(start: int) -> None:
        try:
            for i in range(start, start + 200):
                index.add(f"f{i}", f"p{i}", emb[i])
                if i % 4 == 0:
                    assert index.remove_face(f"f{i}")
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(100):
                for hits in index.search(emb[:4], top_k=5):
                    assert len({name for name, _ in hits}) == len(hits)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (0, 200, 400, 600)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 600 and index.identities == 600
    hits = index.search(emb[1:2], top_k=1)
    assert hits[0][0] == ("p1", pytest.approx(1.0, abs=1e-5))


def test_widens_when_one_identity_holds_all_the_best_faces() -> None:
    rng = np.random.default_rng(5)
    query = _unit(rng, 1, 16)
    near = query + 0.05 * rng.standard_normal((60, 16)).astype(np.float32)
    far = _unit(rng, 2, 16)
    emb = np.vstack([near, far])
    idents = ["A"] * 60 + ["B", "C"]
    index = GalleryIndex(16)
    index.add_many([f"f{i}" for i in range(62)], idents, emb)
    [hits] = index.search(query, top_k=3)
    assert hits[0][0] == "A"
    assert sorted(name for name, _ in hits) == ["A", "B", "C"]
    [want] = _brute_force(index._emb[:62], idents, query, 3)
    assert [n for n, _ in hits] == [n for n, _ in want]


def test_search_centroids_scores_identities_by_their_normalised_mean() -> None:
    """Two spread photos of A beat one photo of B that is slightly closer than either of
    A's: the centroid of A is what the query resembles."""

    e = np.eye(4, dtype=np.float32)
    index = GalleryIndex(4)
    index.add("a1", "A", e[0])
    index.add("a2", "A", e[1])
    b = np.array([0.75, 0.66, 0.0, 0.0], dtype=np.float32)
    index.add("b1", "B", b)
    query = np.array([[1.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    by_face = index.search(query, top_k=2)[0]
    assert [name for name, _ in by_face] == ["B", "A"]
    by_centroid = index.search_centroids(query, top_k=2)[0]
    assert [name for name, _ in by_centroid] == ["A", "B"]
    assert by_centroid[0][1] == pytest.approx(1.0, abs=1e-6)
    want_b = float(b @ query[0]) / float(np.linalg.norm(b) * np.linalg.norm(query[0]))
    assert by_centroid[1][1] == pytest.approx(want_b, abs=1e-6)
    index.remove_identity("A")
    assert [name for name, _ in index.search_centroids(query, top_k=2)[0]] == ["B"]
