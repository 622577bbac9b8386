"""Exact top-k search over a large gallery by an int8 pre-scan with a proven error bound.

Reading the float32 matrix is what makes exact search slow at scale (512 MB per query
at 1 M faces × 128 dims). Instead every unit-length gallery row ``x`` is also kept as
int8 codes ``c = round(127·x)``, a quarter of the bytes, and the query is quantised the
same way. One pass of integer dot products (numkong's SIMD kernels, the gallery split
across threads) gives approximate scores ``ã``; the float32 rows are then read only for
the few candidates that could still be in the top k.

Why the answer is exact: with ``x̃ = c/127`` and ``q̃`` the dequantised query,
``|q·x − q̃·x̃| ≤ ‖x − x̃‖ + ‖q − q̃‖·‖x̃‖ ≤ R + r·(1 + R) =: B`` (Cauchy–Schwarz, ``‖q‖ = 1``),
where ``R`` bounds every row's quantisation error and ``r`` is the query's. Score the k
rows with the best ``ã`` exactly; their k-th best exact score ``s`` is a lower bound of
the true k-th best. Any row scoring ≥ ``s`` has ``ã ≥ s − B``, so re-scoring in float32
every row with ``ã ≥ s − B`` and keeping those scoring ≥ ``s`` yields *every* row with a
true score ≥ ``s``: at least k rows, complete, in exact order. Integer dot products of
int8 vectors are exact (int32 accumulators).
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from faces.cpu import usable_cores

QUANT_SCALE = 127.0
# Scores of float32 rows differ from the real-number dot product by far less than this;
# it keeps the bound sound against rounding in the dequantisation and re-scoring.
_ROUNDING_SLACK = 1e-5
# Rows per thread below which splitting the scan is not worth a thread hand-off.
_MIN_ROWS_PER_THREAD = 32_768


def quantize(unit_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes of L2-normalised float32 rows, and each row's error norm ‖x − c/127‖."""
    codes = np.clip(np.rint(unit_rows * QUANT_SCALE), -127, 127).astype(np.int8)
    error = np.linalg.norm(unit_rows - codes.astype(np.float32) / QUANT_SCALE, axis=1)
    return codes, error.astype(np.float32)


class QuantizedScan:
    """int8 pre-scan + exact float32 re-scoring; owns the worker threads of one index."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = max(1, threads or usable_cores())
        # The calling thread scans one part itself, so threads - 1 helpers.
        self._pool = (
            ThreadPoolExecutor(self.threads - 1, thread_name_prefix="faceid-scan")
            if self.threads > 1
            else None
        )
        self._out: Any = None  # numkong int32 tensor reused across calls
        self._out_rows = 0

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def approximate(self, query_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Integer dot products of one int8 query with every int8 row (int32, exact).

        The returned array is a buffer reused by the next call (callers hold the index
        lock, so calls never overlap).
        """
        import numkong as nk  # lazy: only galleries big enough to scan need it

        n = codes.shape[0]
        if self._out_rows < n:
            self._out_rows = max(n, 2 * self._out_rows)
            self._out = nk.empty((self._out_rows, 1), dtype="int32")
        # numkong's packed GEMM kernel with the query as the packed side streams the
        # gallery rows in tiles, faster than its pairwise cdist (docs/BENCHMARKS.md).
        packed = nk.dots_pack(query_codes.reshape(1, -1))
        parts = min(self.threads, max(1, n // _MIN_ROWS_PER_THREAD))
        bounds = np.linspace(0, n, parts + 1).astype(int).tolist()
        futures = []
        if self._pool is not None:
            futures = [
                self._pool.submit(nk.dots_packed, codes[a:b], packed, out=self._out[a:b])
                for a, b in itertools.pairwise(bounds[1:])
            ]
        nk.dots_packed(codes[: bounds[1]], packed, out=self._out[: bounds[1]])
        for future in futures:
            future.result()
        return np.asarray(self._out)[:n, 0]

    def top_rows(
        self,
        query: np.ndarray,
        rows: np.ndarray,
        codes: np.ndarray,
        max_row_error: float,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every row whose exact score is at least a cut-off met by ≥ k rows.

        ``query``: unit float32 vector; ``rows``/``codes``: the gallery (float32 unit rows
        and their int8 codes); ``max_row_error``: an upper bound of every row's
        quantisation error. Returns (row indices, exact float32 scores), unordered; the
        set holds at least ``min(k, n)`` rows and is exactly the rows scoring ≥ the cut-off.
        """
        n = rows.shape[0]
        k = max(1, min(k, n))
        query_codes, query_error = quantize(query.reshape(1, -1))
        raw = self.approximate(query_codes[0], codes)  # approximate scores × 127²
        unit = QUANT_SCALE * QUANT_SCALE
        bound = max_row_error + float(query_error[0]) * (1.0 + max_row_error) + _ROUNDING_SLACK
        # The k (or a few more, on ties) best rows by approximate score, scored exactly:
        # their k-th best exact score is a lower bound of the true k-th best score.
        best = np.flatnonzero(raw >= kth_largest(raw, k))  # int32 vs int32: no upcast
        best_exact = rows[best] @ query
        cut = float(np.partition(best_exact, len(best) - k)[len(best) - k])
        # A row scoring ≥ cut has an approximate score ≥ cut - bound: fetch those only.
        floor = np.int32(math.ceil((cut - bound) * unit))  # raw is integral
        candidates = np.flatnonzero(raw >= floor)
        exact = rows[candidates] @ query
        keep = exact >= cut
        return candidates[keep], exact[keep]


def kth_largest(values: np.ndarray, k: int) -> Any:
    """The k-th largest value of a 1-D array (1-based, as the array's own scalar type),
    faster than a full partition.

    A strided sample gives a threshold that a few thousand values exceed; only those are
    partitioned. Falls back to ``np.partition`` of everything when the sample misleads.
    """
    n = values.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    if n <= 65_536:
        return np.partition(values, n - k)[n - k]
    stride = 64
    sample = values[::stride]
    # The sample's (k // stride + 8)-th largest: about k + 8·stride values lie above it.
    j = min(len(sample), k // stride + 8)
    threshold = np.partition(sample, len(sample) - j)[len(sample) - j]
    above = values[values >= threshold]
    if len(above) < k:
        return np.partition(values, n - k)[n - k]
    return np.partition(above, len(above) - k)[len(above) - k]
