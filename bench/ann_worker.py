"""Runs INSIDE the ANN virtual environment (usearch + numpy); see ``bench.gallery --ann``.

Builds a usearch HNSW index (inner product = cosine on L2-normalised rows) over
``gallery.npy``, then answers each row of ``queries.npy`` one at a time (single-query
latency, like one face of one /identify request), and writes ``out.npz`` with the top-k
row ids per query and the per-query latencies, plus one JSON line of totals.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gallery", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--dtype", default="f32", help="usearch scalar kind: f32, f16, i8")
    ap.add_argument("--connectivity", type=int, default=16)
    ap.add_argument("--expansion-add", type=int, default=128)
    ap.add_argument("--expansion-search", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="build threads (0 = all)")
    args = ap.parse_args(argv)

    import usearch
    from usearch.index import Index

    g = np.load(args.gallery, mmap_mode="r")
    q = np.load(args.queries)
    index = Index(
        ndim=g.shape[1],
        metric="ip",
        dtype=args.dtype,
        connectivity=args.connectivity,
        expansion_add=args.expansion_add,
        expansion_search=args.expansion_search,
    )
    t0 = time.perf_counter()
    index.add(np.arange(len(g), dtype=np.uint64), np.ascontiguousarray(g), threads=args.threads)
    build_s = time.perf_counter() - t0
    index.search(q[0], args.top_k)  # warm-up
    keys = np.full((len(q), args.top_k), -1, dtype=np.int64)
    lat = np.zeros(len(q))
    for i in range(len(q)):
        t = time.perf_counter()
        m = index.search(q[i], args.top_k)
        lat[i] = time.perf_counter() - t
        k = np.asarray(m.keys, dtype=np.int64)[: args.top_k]
        keys[i, : len(k)] = k
    np.savez(args.out, keys=keys, seconds=lat)
    print(
        json.dumps(
            {
                "usearch": usearch.__version__,
                "build_s": build_s,
                "memory_bytes": int(index.memory_usage),
                "dtype": args.dtype,
                "connectivity": args.connectivity,
                "expansion_add": args.expansion_add,
                "expansion_search": args.expansion_search,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
