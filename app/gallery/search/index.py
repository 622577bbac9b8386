"""In-memory gallery index: every enrolled embedding in one float32 matrix.

Matching a batch of queries is ONE matrix product (``queries @ gallery.T``) followed by a
partial sort (``np.argpartition``); there is no Python loop over gallery faces (speed at
scale: docs/BENCHMARKS.md).

Scores are cosine similarities: embeddings and queries are L2-normalised on the way in.
An identity may hold several faces; ``search`` reports each identity once, with the score
of its best-matching face.

Thread-safe: every public method takes one lock (numpy releases the GIL inside the matrix
product, so other Python threads keep running while a search computes).

From ``_SCAN_MIN_FACES`` faces on, exact search first scans int8 copies of the rows on
every core and re-scores in float32 only the rows that can still be in the top k
(``app.gallery.search.scan``: a quarter of the bytes per query, same answers).

Large galleries (``ann_min_faces``): exact search still costs one pass over every row,
so from ``ann_min_faces`` faces on, searches ask an HNSW graph
(``app.gallery.search.ann``) for candidate faces instead and re-score only those exactly. A
background thread builds the graph and keeps it caught up with enrollments; rows it has
not inserted yet are scored exactly, and until it has nearly caught up (or while it holds
the graph), searches stay exact.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from app.gallery.search.ann import AnnIndex
from app.gallery.search.scan import QuantizedScan, quantize

log = logging.getLogger("faceid.gallery")

# Upper bound on the floats in one (queries × gallery) score block, to cap memory use.
_MAX_BLOCK_FLOATS = 1 << 24  # 16 M floats = 64 MiB
_INITIAL_CAPACITY = 1024
# Approximate search: faces fetched from the graph per query are max(_ANN_MIN_CANDIDATES,
# _ANN_CANDIDATES_PER_K × top_k); it is used once at most _ANN_MAX_TAIL faces are not yet
# in the graph (those are scored exactly); a search waits at most _ANN_WAIT_S for a
# builder step holding the graph before it searches exactly instead.
_ANN_MIN_CANDIDATES = 64
_ANN_CANDIDATES_PER_K = 8
_ANN_MAX_TAIL = 4096
_ANN_WAIT_S = 0.01
# From this many faces on, exact search goes through the int8 pre-scan (below it the
# float32 matrix product is already sub-millisecond).
_SCAN_MIN_FACES = 16_384


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32, copy=False)


class GalleryIndex:
    """Enrolled face embeddings, matched by cosine similarity."""

    def __init__(self, dim: int, ann_min_faces: int = 0, search_threads: int = 0) -> None:
        """``ann_min_faces``: from this many faces on, search through an approximate
        (HNSW) index with exact re-scoring; 0 (the default): always exact.
        ``search_threads``: threads one exact scan of a large gallery uses (0: every
        usable core)."""
        if dim < 1:
            raise ValueError("dim must be >= 1")
        if ann_min_faces < 0:
            raise ValueError("ann_min_faces must be >= 0")
        self.dim = int(dim)
        self.ann_min_faces = int(ann_min_faces)
        self._ann: AnnIndex | None = None
        self._builder: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._emb = np.zeros((_INITIAL_CAPACITY, self.dim), dtype=np.float32)
        self._emb8 = np.zeros((_INITIAL_CAPACITY, self.dim), dtype=np.int8)  # int8 codes
        self._max_error = 0.0  # ≥ every row's quantisation error (never lowered)
        self._scan = QuantizedScan(search_threads or None)
        self._codes = np.zeros(_INITIAL_CAPACITY, dtype=np.int64)  # row → identity code
        self._face_ids: list[str] = []  # row → face id
        self._row_of: dict[str, int] = {}  # face id → row
        self._code_of: dict[str, int] = {}  # identity → code
        self._names: list[str | None] = []  # code → identity (None once freed)
        self._rows_of_code: dict[int, set[int]] = {}  # code → rows
        self._size = 0

    # ------------------------------------------------------------------ size
    def __len__(self) -> int:
        """Number of enrolled faces."""
        return self._size

    @property
    def identities(self) -> int:
        """Number of distinct enrolled identities."""
        return len(self._code_of)

    def faces_per_identity(self) -> dict[str, int]:
        """Identity → number of faces (a snapshot)."""
        with self._lock:
            return {name: len(self._rows_of_code[code]) for name, code in self._code_of.items()}

    def face_ids(self) -> set[str]:
        """The ids of every enrolled face (a snapshot)."""
        with self._lock:
            return set(self._face_ids)

    def __contains__(self, face_id: object) -> bool:
        return face_id in self._row_of

    def snapshot(self) -> tuple[list[str], list[str], np.ndarray]:
        """(face ids, identity of each, L2-normalised embeddings N×dim): a copy, taken
        under the lock, for whole-gallery analyses (``app.gallery.audit``)."""
        with self._lock:
            size = self._size
            names = [str(self._names[int(c)]) for c in self._codes[:size].tolist()]
            return list(self._face_ids), names, self._emb[:size].copy()

    def identity_of(self, face_id: str) -> str | None:
        """The identity a face is enrolled under here (None: not in the index)."""
        with self._lock:
            row = self._row_of.get(face_id)
            return None if row is None else self._names[int(self._codes[row])]

    # ---------------------------------------------------------------- writes
    def _reserve(self, extra: int) -> None:
        need = self._size + extra
        capacity = self._emb.shape[0]
        if need <= capacity:
            return
        while capacity < need:
            capacity *= 2
        emb = np.zeros((capacity, self.dim), dtype=np.float32)
        emb[: self._size] = self._emb[: self._size]
        emb8 = np.zeros((capacity, self.dim), dtype=np.int8)
        emb8[: self._size] = self._emb8[: self._size]
        codes = np.zeros(capacity, dtype=np.int64)
        codes[: self._size] = self._codes[: self._size]
        self._emb, self._emb8, self._codes = emb, emb8, codes

    def _code(self, identity: str) -> int:
        code = self._code_of.get(identity)
        if code is None:
            code = len(self._names)
            self._names.append(identity)
            self._code_of[identity] = code
            self._rows_of_code[code] = set()
        return code

    def add(self, face_id: str, identity: str, embedding: np.ndarray) -> None:
        """Add one face (``embedding`` of shape (dim,))."""
        self.add_many([face_id], [identity], np.asarray(embedding).reshape(1, -1))

    def add_many(
        self, face_ids: Sequence[str], identities: Sequence[str], embeddings: np.ndarray
    ) -> None:
        """Add faces in bulk; ``embeddings`` is N×dim. Raises ValueError on a duplicate id."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        n = len(face_ids)
        if embeddings.ndim != 2 or embeddings.shape != (n, self.dim) or len(identities) != n:
            raise ValueError(
                f"expected {n} face ids, {n} identities and a {n}x{self.dim} embedding matrix; "
                f"got {len(identities)} identities and {embeddings.shape}"
            )
        if n == 0:
            return
        if len(set(face_ids)) != n:
            raise ValueError("duplicate face ids in one add_many call")
        normed = _normalise(embeddings)
        quantised, errors = quantize(normed)
        with self._lock:
            dup = next((f for f in face_ids if f in self._row_of), None)
            if dup is not None:
                raise ValueError(f"face id {dup!r} is already in the index")
            self._reserve(n)
            start = self._size
            codes = np.fromiter((self._code(i) for i in identities), dtype=np.int64, count=n)
            self._emb[start : start + n] = normed
            self._emb8[start : start + n] = quantised
            self._max_error = max(self._max_error, float(errors.max()))
            self._codes[start : start + n] = codes
            self._face_ids.extend(face_ids)
            self._row_of.update(zip(face_ids, range(start, start + n), strict=True))
            for row, code in enumerate(codes.tolist(), start):
                self._rows_of_code[code].add(row)
            self._size += n
            self._start_builder()

    def _remove_row(self, row: int) -> None:
        """Remove one row by moving the last row into its place (lock held)."""
        last = self._size - 1
        code = int(self._codes[row])
        face_id = self._face_ids[row]
        rows = self._rows_of_code[code]
        rows.discard(row)
        if not rows:
            del self._rows_of_code[code]
            name = self._names[code]
            if name is not None:
                del self._code_of[name]
            self._names[code] = None
        del self._row_of[face_id]
        if row != last:
            moved_code = int(self._codes[last])
            moved_id = self._face_ids[last]
            self._emb[row] = self._emb[last]
            self._emb8[row] = self._emb8[last]
            self._codes[row] = moved_code
            self._face_ids[row] = moved_id
            self._row_of[moved_id] = row
            moved_rows = self._rows_of_code[moved_code]
            moved_rows.discard(last)
            moved_rows.add(row)
        if self._ann is not None:
            self._ann.remove_row(row, last, self._emb[row])
        self._face_ids.pop()
        self._size = last

    def remove_face(self, face_id: str) -> bool:
        """Remove one face; False if it was not in the index."""
        with self._lock:
            row = self._row_of.get(face_id)
            if row is None:
                return False
            self._remove_row(row)
            return True

    def remove_identity(self, identity: str) -> int:
        """Remove every face of ``identity``; returns how many were removed."""
        with self._lock:
            code = self._code_of.get(identity)
            if code is None:
                return 0
            # Highest rows first: the last row moved into each hole is then never one of
            # this identity's rows still waiting to be removed.
            rows = sorted(self._rows_of_code[code], reverse=True)
            for row in rows:
                self._remove_row(row)
            return len(rows)

    # ----------------------------------------------------------- approximate
    @property
    def ann_faces(self) -> int:
        """Faces in the approximate index (0 when there is none)."""
        ann = self._ann
        return ann.rows if ann is not None else 0

    @property
    def ann_memory_bytes(self) -> int:
        """Memory held by the approximate index (0 when there is none)."""
        ann = self._ann
        return ann.memory_bytes if ann is not None else 0

    def _start_builder(self) -> None:
        """Start the background builder if the graph lags behind the matrix (lock held)."""
        if not self.ann_min_faces or self._closed or self._builder is not None:
            return
        if self._ann is None:
            if self._size < self.ann_min_faces:
                return
            self._ann = AnnIndex(self.dim)
        if self._ann.rows < self._size:
            self._builder = threading.Thread(
                target=self._build, name="faceid-ann-build", daemon=True
            )
            self._builder.start()

    def _build(self) -> None:
        """Builder thread: insert rows into the graph chunk by chunk until caught up.

        Holds the index lock only to claim a chunk, never while inserting it.
        """
        t0, inserted = time.perf_counter(), 0
        try:
            while True:
                with self._lock:
                    ann = self._ann
                    step = None
                    if ann is not None and not self._closed:
                        step = ann.claim(self._emb[: self._size])
                    if ann is None or step is None:
                        self._builder = None
                        break
                ann.insert_claimed(*step)
                inserted += len(step[1])
        except Exception:
            log.exception("approximate index failed; searching exactly from now on")
            with self._lock:
                self._ann, self._builder, self.ann_min_faces = None, None, 0
            return
        if inserted >= 10_000:
            log.info(
                "approximate index caught up",
                extra={"faces_inserted": inserted, "seconds": round(time.perf_counter() - t0, 1)},
            )

    def wait_for_ann(self, timeout: float | None = None) -> bool:
        """Wait until the background builder has caught up (or ``timeout`` seconds pass);
        True if the approximate index then covers every face."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                builder = self._builder
                caught_up = self._ann is not None and self._ann.rows == self._size
            if builder is None:
                return caught_up
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            builder.join(left)

    def close(self) -> None:
        """Stop the background builder (after its current chunk); searches stay exact."""
        with self._lock:
            self._closed = True
            self._ann = None
        self._scan.close()

    # ---------------------------------------------------------------- search
    def search(self, queries: np.ndarray, top_k: int = 1) -> list[list[tuple[str, float]]]:
        """For each query (N×dim float32), the ``top_k`` best identities, best first.

        Each identity appears once, scored by its best-matching face (cosine similarity).
        An empty index gives an empty list per query.
        """
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries.reshape(1, -1)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be N x {self.dim}, got {queries.shape}")
        if top_k < 1:
            raise ValueError("top_k must be >= 1")
        q = _normalise(queries)
        results: list[list[tuple[str, float]]] = []
        with self._lock:
            size = self._size
            if size == 0:
                return [[] for _ in range(len(q))]
            ann = self._ann
            if ann is not None and size >= self.ann_min_faces and size - ann.rows <= _ANN_MAX_TAIL:
                count = max(_ANN_MIN_CANDIDATES, _ANN_CANDIDATES_PER_K * top_k)
                found = ann.try_search(q, count, _ANN_WAIT_S)
                if found is not None:
                    return self._rescore(q, *found, top_k)
            gallery = self._emb[:size]
            codes = self._codes[:size]
            if size >= _SCAN_MIN_FACES:
                return [self._scan_search(query, top_k) for query in q]
            block = max(1, _MAX_BLOCK_FLOATS // size)
            k = min(size, top_k * 4)
            for start in range(0, len(q), block):
                scores = q[start : start + block] @ gallery.T  # the one matrix product
                # Best k faces of every query at once (unordered), then per-query dedup.
                if k < size:
                    best = np.argpartition(scores, size - k, axis=1)[:, size - k :]
                else:
                    best = np.broadcast_to(np.arange(size), scores.shape)
                for row, candidates in zip(scores, best, strict=True):
                    hits = self._distinct(row, candidates, codes, top_k)
                    if hits is None:  # fewer than top_k identities among the best k faces
                        hits = self._top_identities(row, codes, top_k, k * 4)
                    results.append(hits)
        return results

    def search_centroids(
        self, queries: np.ndarray, top_k: int = 1, pool: int = 10
    ) -> list[list[tuple[str, float]]]:
        """Like ``search``, but each identity is scored by the cosine with the normalised
        mean of its faces (its centroid), which measures better than the best face when
        people have several faces (docs/MODEL.md, "Identity-level scoring").

        The ``max(top_k, pool)`` identities with the best faces are re-scored by centroid;
        an identity outside them would need its centroid to beat theirs while none of its
        faces comes close, which the protocol never showed.
        """
        found = self.search(queries, max(top_k, pool))
        q = _normalise(np.asarray(queries, dtype=np.float32).reshape(len(found), -1))
        results = []
        with self._lock:
            for query, hits in zip(q, found, strict=True):
                scored = []
                for name, _ in hits:
                    code = self._code_of.get(name)
                    if code is None:  # erased since the search
                        continue
                    total = self._emb[sorted(self._rows_of_code[code])].sum(axis=0)
                    norm = float(np.linalg.norm(total))
                    if norm > 0:
                        scored.append((name, float(total @ query) / norm))
                scored.sort(key=lambda hit: -hit[1])
                results.append(scored[:top_k])
        return results

    def _scan_search(self, query: np.ndarray, top_k: int) -> list[tuple[str, float]]:
        """Exact top identities of one query through the int8 pre-scan (lock held)."""
        size = self._size
        gallery, codes = self._emb[:size], self._codes[:size]
        want = min(top_k, len(self._code_of))
        k = top_k * 4
        while True:
            rows, scores = self._scan.top_rows(
                query, gallery, self._emb8[:size], self._max_error, k
            )
            # ``rows`` are every face scoring above a cut-off, so the best identities
            # among them are exact once there are enough of them.
            hits = self._distinct(scores, np.arange(len(rows)), codes[rows], top_k)
            if (hits is not None and len(hits) >= want) or k >= size:
                return hits or []
            k *= 4

    def _rescore(
        self, q: np.ndarray, built: int, candidates: np.ndarray, top_k: int
    ) -> list[list[tuple[str, float]]]:
        """Exact answers from approximate candidates (lock held).

        Scores each query's candidate rows (-1: none) and every row the graph does not hold
        yet (``built`` on) exactly; a query whose candidates name fewer than ``top_k``
        identities (one identity holding most of them) is searched exactly instead.
        """
        size = self._size
        gallery, codes = self._emb[:size], self._codes[:size]
        tail = np.arange(built, size)
        want = min(top_k, len(self._code_of))
        results = []
        for query, found in zip(q, candidates, strict=True):
            found = found[found >= 0]
            rows = np.concatenate([found, tail])
            scores = np.concatenate([gallery[found] @ query, gallery[built:] @ query])
            hits = self._distinct(scores, np.arange(len(rows)), codes[rows], top_k)
            if hits is None or len(hits) < want:
                hits = self._top_identities(gallery @ query, codes, top_k, top_k * 4)
            results.append(hits)
        return results

    def _distinct(
        self, scores: np.ndarray, candidates: np.ndarray, codes: np.ndarray, top_k: int
    ) -> list[tuple[str, float]] | None:
        """Best-first distinct identities among ``candidates`` (face rows), or None when
        fewer than ``top_k`` identities appear and more faces must be looked at."""
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        _, first = np.unique(codes[order], return_index=True)
        if len(first) < top_k and len(candidates) < scores.shape[0]:
            return None
        first.sort()
        chosen = order[first[:top_k]]
        return [(str(self._names[int(codes[i])]), float(scores[i])) for i in chosen.tolist()]

    def _top_identities(
        self, scores: np.ndarray, codes: np.ndarray, top_k: int, k: int
    ) -> list[tuple[str, float]]:
        """Top ``top_k`` distinct identities of one score row (lock held).

        Takes the best ``k`` faces with argpartition and keeps the first face of each
        identity, best first; if fewer than ``top_k`` identities appear, widens ``k``. Any
        identity absent from the best ``k`` faces scores no higher than all of them, so
        the answer is exact.
        """
        size = scores.shape[0]
        while True:
            k = min(size, k)
            candidates = (
                np.argpartition(scores, size - k)[size - k :] if k < size else np.arange(size)
            )
            hits = self._distinct(scores, candidates, codes, top_k)
            if hits is not None:
                return hits
            k *= 4
