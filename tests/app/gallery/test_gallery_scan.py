"""The int8 pre-scan: its answers equal exhaustive float32 search, near-ties included."""

from __future__ import annotations

import numpy as np
import pytest

from app.gallery.search import index as index_module
from app.gallery.search.index import GalleryIndex
from app.gallery.search.scan import QuantizedScan, kth_largest, quantize


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _exact_top_identities(emb, codes, query, top_k):
    scores = emb @ query
    best: dict[int, float] = {}
    for code, s in zip(codes.tolist(), scores.tolist(), strict=True):
        best[code] = max(best.get(code, -2.0), s)
    return sorted(best.items(), key=lambda kv: -kv[1])[:top_k]


def test_quantize_error_norms_are_the_true_reconstruction_errors() -> None:
    rows = _unit(np.random.default_rng(0), 100, 128)
    codes, error = quantize(rows)
    assert codes.dtype == np.int8 and int(np.abs(codes.astype(int)).max()) <= 127
    manual = np.linalg.norm(rows - codes.astype(np.float64) / 127.0, axis=1)
    np.testing.assert_allclose(error, manual, rtol=1e-4)
    assert 0 < error.max() < 0.05  # ≈ sqrt(128/12)/127 for uniform rounding


@pytest.mark.parametrize("k", [1, 7, 64, 5000])
def test_kth_largest_matches_a_full_sort(k: int) -> None:
    values = np.random.default_rng(k).standard_normal(200_000).astype(np.float32)
    assert kth_largest(values, k) == np.sort(values)[-k]


def test_kth_largest_with_many_equal_values_and_bad_k() -> None:
    values = np.zeros(100_000, np.float32)
    values[:3] = [3.0, 2.0, 1.0]
    assert kth_largest(values, 2) == 2.0 and kth_largest(values, 50) == 0.0
    with pytest.raises(ValueError):
        kth_largest(values, 0)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_top_rows_is_the_complete_set_above_its_cut_off(threads: int) -> None:
    rng = np.random.default_rng(threads)
    rows = _unit(rng, 120_000, 128)
    codes, error = quantize(rows)
    scan = QuantizedScan(threads)
    try:
        for query in _unit(rng, 5, 128):
            found, scores = scan.top_rows(query, rows, codes, float(error.max()), 10)
            exact = rows @ query
            np.testing.assert_allclose(scores, exact[found], rtol=1e-6, atol=1e-6)
            cut = scores.min()
            # Every row at or above the cut-off is there, and nothing below it.
            assert set(found.tolist()) == set(np.flatnonzero(exact >= cut).tolist())
            assert len(found) >= 10
            np.testing.assert_array_equal(np.sort(scores)[::-1][:10], np.sort(exact)[::-1][:10])
    finally:
        scan.close()


def test_top_rows_stays_exact_when_quantisation_cannot_tell_rows_apart() -> None:
    # 2,000 rows within 1e-4 of the query in cosine: their int8 codes are identical, so
    # only the float32 re-scoring can order them.
    rng = np.random.default_rng(7)
    base = _unit(rng, 1, 128)[0]
    close = base + 2e-4 * rng.standard_normal((2_000, 128)).astype(np.float32)
    rows = np.vstack([_unit(rng, 60_000, 128), close / np.linalg.norm(close, axis=1)[:, None]])
    codes, error = quantize(rows)
    scan = QuantizedScan(2)
    try:
        found, scores = scan.top_rows(base, rows, codes, float(error.max()), 5)
    finally:
        scan.close()
    exact = rows @ base
    assert set(np.argsort(-exact)[:5].tolist()) <= set(found.tolist())
    np.testing.assert_array_equal(np.sort(scores)[::-1][:5], np.sort(exact)[::-1][:5])


@pytest.mark.parametrize("top_k", [1, 5])
def test_large_index_search_equals_exhaustive_search(top_k: int) -> None:
    rng = np.random.default_rng(11)
    n, dim = index_module._SCAN_MIN_FACES + 5_000, 64
    centres = _unit(rng, n // 3, dim)
    codes = np.arange(n) // 3 % len(centres)
    emb = centres[codes] + 0.1 * rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    index = GalleryIndex(dim, search_threads=2)
    index.add_many([f"f{i}" for i in range(n)], [f"id{c}" for c in codes.tolist()], emb)
    queries = np.vstack([centres[:20] + 0.1 * rng.standard_normal((20, dim)), _unit(rng, 10, dim)])
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    got = index.search(queries, top_k=top_k)
    for q, hits in zip(queries, got, strict=True):
        want = _exact_top_identities(emb, codes, q, top_k)
        assert [name for name, _ in hits] == [f"id{c}" for c, _ in want]
        np.testing.assert_allclose([s for _, s in hits], [s for _, s in want], atol=1e-5)
    index.close()


def test_large_index_scan_follows_removals_and_widens_for_one_dominant_identity() -> None:
    rng = np.random.default_rng(12)
    dim = 32
    n = index_module._SCAN_MIN_FACES + 100
    query = _unit(rng, 1, dim)[0]
    near = query + 0.02 * rng.standard_normal((300, dim)).astype(np.float32)
    emb = np.vstack([near / np.linalg.norm(near, axis=1)[:, None], _unit(rng, n - 300, dim)])
    idents = ["A"] * 300 + [f"p{i}" for i in range(n - 300)]
    index = GalleryIndex(dim, search_threads=2)
    index.add_many([f"f{i}" for i in range(n)], idents, emb)
    [hits] = index.search(query, top_k=4)  # 300 faces of A come first: must widen
    assert hits[0][0] == "A" and len({name for name, _ in hits}) == 4
    scores = emb @ query
    pairs = zip(scores[300:].tolist(), idents[300:], strict=True)
    others = sorted(pairs, reverse=True)
    assert [name for name, _ in hits[1:]] == [who for _, who in others[:3]]
    assert index.remove_identity("A") == 300
    index.remove_face(f"f{300 + int(np.argmax(scores[300:]))}")  # the best other face
    [hits] = index.search(query, top_k=2)
    assert [name for name, _ in hits] == [who for _, who in others[1:3]]
    index.close()


def test_a_face_moved_by_a_removal_is_still_found() -> None:
    # Removal moves the last row into the hole; its int8 codes must move with it.
    rng = np.random.default_rng(13)
    dim = 32
    n = index_module._SCAN_MIN_FACES + 10
    query = _unit(rng, 1, dim)[0]
    emb = _unit(rng, n, dim)
    emb[-1] = query
    idents = [f"p{i}" for i in range(n - 1)] + ["Z"]
    index = GalleryIndex(dim, search_threads=2)
    index.add_many([f"f{i}" for i in range(n)], idents, emb)
    assert index.remove_identity("p0") == 1
    [hits] = index.search(query, top_k=1)
    assert hits[0][0] == "Z" and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    index.close()
