"""Approximate candidate search for large galleries: a usearch HNSW graph over the rows of
``GalleryIndex``'s embedding matrix.

The graph only *proposes* candidate rows; ``GalleryIndex`` re-scores them exactly against
its float32 matrix, so reported scores stay exact cosine similarities and only recall is
approximate. The graph therefore stores 8-bit vectors (a quarter of the float32 memory).

A usearch key is always the gallery row of the face. The graph holds the leading
``rows`` rows of the matrix: a background builder (see ``GalleryIndex``) inserts rows
``[rows, len(gallery))`` in chunks, and rows not yet inserted are searched exactly by the
caller. When ``GalleryIndex`` deletes a row by moving its last row into the hole,
``remove_row`` mirrors that move (``remove`` + ``rename``), so keys keep matching rows.

Locking: every usearch call runs under this object's lock. ``GalleryIndex`` takes its own
lock first and this one second; the builder alone takes this lock inside the index lock
and releases the index lock while it inserts (``claim`` / ``insert_claimed``), so
enrollments never wait for a chunk being built, and searches wait only briefly before
they fall back to exact search.
"""

from __future__ import annotations

import threading

import numpy as np
from usearch.index import BatchMatches, Index, Matches

from faces.cpu import usable_cores

#: HNSW "M". 32 rather than usearch's default 16: 128-d embeddings have little structure
#: beyond identity clusters, and M=16 lost too much recall at 100k faces (docs/BENCHMARKS.md,
#: "Measurements behind choices in the code").
CONNECTIVITY = 32
#: Construction beam width ("efConstruction").
EXPANSION_ADD = 128
#: Search beam width ("ef"); a search for more candidates than this widens it.
EXPANSION_SEARCH = 128
#: Vectors inserted per builder step: small enough that a removal waiting for the step to
#: finish is not held up long.
CHUNK_ROWS = 256
#: Threads a builder step uses: half the cores, leaving the rest to requests.
BUILD_THREADS = max(1, usable_cores() // 2)


class AnnIndex:
    """An HNSW graph over gallery rows ``[0, rows)``; keys are row numbers."""

    def __init__(self, dim: int) -> None:
        self._index = Index(
            ndim=dim,
            metric="cos",
            dtype="i8",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )
        self._lock = threading.Lock()
        #: Rows ``[0, rows)`` are in the graph, or claimed by a builder step in flight
        #: (which holds the lock until they are).
        self.rows = 0

    @property
    def memory_bytes(self) -> int:
        """Memory held by the graph and its vectors."""
        with self._lock:
            return int(self._index.memory_usage)

    # ------------------------------------------------------------- building
    def claim(self, gallery: np.ndarray) -> tuple[int, np.ndarray] | None:
        """Claim the next chunk of ``gallery`` (the index's live rows; index lock held).

        Returns ``(first row, vectors copy)`` with this object's lock *held*, to be passed
        to ``insert_claimed`` after the caller releases the index lock; None (lock not
        held) when every row is already in the graph.
        """
        start = self.rows
        stop = min(len(gallery), start + CHUNK_ROWS)
        if start >= stop:
            return None
        vectors = gallery[start:stop].copy()
        self._lock.acquire()  # never waits: only a claimed step holds it outside the index lock
        self.rows = stop
        return start, vectors

    def insert_claimed(self, start: int, vectors: np.ndarray) -> None:
        """Insert a claimed chunk (no index lock needed) and release this object's lock."""
        try:
            keys = np.arange(start, start + len(vectors), dtype=np.uint64)
            self._index.add(keys, vectors, threads=BUILD_THREADS)
        finally:
            self._lock.release()

    # --------------------------------------------------------------- writes
    def remove_row(self, row: int, last: int, moved: np.ndarray) -> None:
        """Mirror ``GalleryIndex`` deleting ``row`` by moving row ``last`` into it.

        ``moved`` is the vector now at ``row`` (unused when ``row == last``). Call with
        the index lock held; waits for a builder step in flight.
        """
        with self._lock:
            built = self.rows
            if row < built:
                self._index.remove(row)
                if row != last:
                    if last < built:
                        self._index.rename(last, row)
                    else:  # the moved face was not in the graph yet, its new row is
                        self._index.add(row, moved, threads=1)
            self.rows = min(built, last)

    # --------------------------------------------------------------- search
    def try_search(
        self, queries: np.ndarray, count: int, wait_s: float
    ) -> tuple[int, np.ndarray] | None:
        """Up to ``count`` candidate rows per query (N×count, -1 where fewer were found),
        with the number of rows the graph covers; None if a builder step holds the graph
        for more than ``wait_s`` seconds (the caller then searches exactly). Call with the
        index lock held."""
        if not self._lock.acquire(timeout=wait_s):
            return None
        try:
            built = self.rows
            if built == 0:
                return 0, np.full((len(queries), 0), -1, dtype=np.int64)
            matches = self._index.search(queries, count, threads=1 if len(queries) == 1 else 0)
        finally:
            self._lock.release()
        if isinstance(matches, Matches):  # usearch unwraps a batch of one
            keys = matches.keys.reshape(1, -1)
            counts = np.array([len(matches.keys)])
        else:
            assert isinstance(matches, BatchMatches)
            keys, counts = matches.keys, matches.counts
        rows = keys.astype(np.int64)
        rows[np.arange(rows.shape[1]) >= counts[:, None]] = -1
        return built, rows
