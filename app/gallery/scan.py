"""Exact top-k search over a large gallery by an int8 pre-scan with a proven error bound.

Reading the float32 matrix is what makes exact search slow at scale (512 MB per query
at 1 M faces × 128 dims). Instead every unit-length gallery row ``x`` is also kept as
int8 codes ``c = round(127·x)``, a quarter of the bytes, and the query is quantised the
same way. One pass of integer dot products (numkong's SIMD kernels, the gallery split
across threads) gives approximate scores ``ã``; the float32 rows are then read only for
the few candidates that could still be in the top k.

Why the answer is exact: with ``x̃ = c/127`` and ``q̃`` the dequantised query,
``|q·x − q̃·x̃| ≤ ‖x − x̃‖ + ‖q − q̃‖·‖x̃‖ ≤ R + r·(1 + R) =: B`` (Cauchy–Schwarz, ``‖q‖ = 1``),
where ``R`` bounds every row's quantisation error and ``r`` is the query's. If ``a_k`` is
the k-th largest ``ã``, the true k-th best score is at least ``a_k − B``, and any row with
``ã < a_k − 2B`` scores below ``a_k − B``. So re-scoring, in float32, every row with
``ã ≥ a_k − 2B`` and keeping those scoring at least ``a_k − B`` yields *every* row with a
true score ≥ ``a_k − B`` — at least k rows, complete, in exact order. Integer dot products
of 128 int8 values are exact in float32 (|sum| ≤ 127²·128 < 2²⁴).
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

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


def default_threads() -> int:
    """Threads for one scan: the usable cores (a scan is memory- and SIMD-bound)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class QuantizedScan:
    """int8 pre-scan + exact float32 re-scoring; owns the worker threads of one index."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = max(1, threads or default_threads())
        self._pool = (
            ThreadPoolExecutor(self.threads, thread_name_prefix="faceid-scan")
            if self.threads > 1
            else None
        )

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def approximate(self, query_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Integer dot products of one int8 query with every int8 row, as float32."""
        import numkong as nk  # lazy: only galleries big enough to scan need it

        n = codes.shape[0]
        out = np.empty((1, n), dtype=np.float32)
        q = query_codes.reshape(1, -1)
        parts = min(self.threads, max(1, n // _MIN_ROWS_PER_THREAD))
        if parts == 1 or self._pool is None:
            nk.cdist(q, codes, metric="dot", out=out)
            return out[0]
        bounds = np.linspace(0, n, parts + 1).astype(int)
        futures = [
            self._pool.submit(nk.cdist, q, codes[a:b], metric="dot", out=out[:, a:b])
            for a, b in itertools.pairwise(bounds.tolist())
        ]
        for future in futures:
            future.result()
        return out[0]

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
        approx = self.approximate(query_codes[0], codes) / (QUANT_SCALE * QUANT_SCALE)
        bound = max_row_error + float(query_error[0]) * (1.0 + max_row_error) + _ROUNDING_SLACK
        kth = float(kth_largest(approx, k))
        candidates = np.flatnonzero(approx >= kth - 2.0 * bound)
        exact = rows[candidates] @ query
        keep = exact >= kth - bound
        return candidates[keep], exact[keep]


def kth_largest(values: np.ndarray, k: int) -> float:
    """The k-th largest value of a 1-D array (1-based), faster than a full partition.

    A strided sample gives a threshold that a few thousand values exceed; only those are
    partitioned. Falls back to ``np.partition`` of everything when the sample misleads.
    """
    n = values.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    if n <= 65_536:
        return float(np.partition(values, n - k)[n - k])
    stride = 64
    sample = values[::stride]
    # The sample's (k // stride + 8)-th largest: about k + 8·stride values lie above it.
    j = min(len(sample), k // stride + 8)
    threshold = np.partition(sample, len(sample) - j)[len(sample) - j]
    above = values[values >= threshold]
    if len(above) < k:
        return float(np.partition(values, n - k)[n - k])
    return float(np.partition(above, len(above) - k)[len(above) - k])
