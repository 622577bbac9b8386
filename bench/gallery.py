"""Gallery scale: the service's matcher (``app.gallery.search.index.GalleryIndex``) at 10k–1M faces.

Synthetic, L2-normalised 128-d embeddings with identity structure: each identity has a
random centre and 2 enrolled faces (centre + noise, cosine ≈ 0.8 to the centre); a query
is a *new* face of an enrolled identity (cosine ≈ 0.6–0.7 to its gallery faces, about what
the real model gives for a genuine pair) against random identities (cosine ≈ 0 ± 0.09).

Per gallery size it measures, in this one process:
- top-5 search latency of ONE query per call (one face of one /identify request), p50/p99,
  and the throughput of a 64-query batch call;
- memory: the index matrix bytes and the process RSS growth while building the index;
- enrollment rate: ``add_many`` in 10k batches (bulk load) and durable single enrollments
  through ``GalleryStore.add_face`` (one SQLite transaction with fsync each, as the API does);
- startup: ``GalleryService.open`` on an SQLite gallery of that size (what the service does
  at start), i.e. read every row + build the index;
- optionally (``--ann``) a usearch HNSW index, run in its own virtual environment
  (``~/.cache/faceid/ann-venv``, usearch pinned below), with recall@1 against exact search;
- optionally (``--service-ann``) the service's own approximate path: ``GalleryIndex`` with
  ``ann_min_faces=1`` (HNSW candidates re-scored exactly), with its background build time
  and identity recall@1 against exact search.

    python -m bench.gallery                 # 10k, 100k, 1M
    python -m bench.gallery --ann           # + approximate index
    python -m bench.gallery --service-ann --sizes 10000,100000  # + the service's ANN path
    python -m bench.gallery --quick         # 10k only, fewer queries (a test runs this)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from bench.common import RESULTS, machine_info, machine_line, md_table, percentiles, write_results

DIM = 128
FACES_PER_ID = 2
ANN_PINS = ["usearch==2.26.6", "numpy==2.4.6"]
TARGET_EXACT_P50_MS = 10.0
TARGET_ANN_P50_MS = 2.0
TARGET_ANN_RECALL = 0.99


# --------------------------------------------------------------------------- data
def _normalise(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synth_gallery(n_faces: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings n×128 float32, identity code per row, identity centres)."""
    rng = np.random.default_rng(seed)
    n_ids = (n_faces + FACES_PER_ID - 1) // FACES_PER_ID
    centres = _normalise(rng.standard_normal((n_ids, DIM), dtype=np.float32))
    codes = np.repeat(np.arange(n_ids), FACES_PER_ID)[:n_faces]
    emb = np.empty((n_faces, DIM), dtype=np.float32)
    step = 100_000
    for s in range(0, n_faces, step):
        c = codes[s : s + step]
        noise = rng.standard_normal((len(c), DIM), dtype=np.float32) * 0.06
        emb[s : s + step] = _normalise(centres[c] + noise)
    return emb, codes, centres


def synth_queries(centres: np.ndarray, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, len(centres), n)
    q = centres[truth] + rng.standard_normal((n, DIM), dtype=np.float32) * 0.085
    return _normalise(q.astype(np.float32)), truth


# --------------------------------------------------------------------------- exact
def bench_exact(n_faces: int, n_queries: int, batch: int, sqlite_rows: int) -> dict[str, Any]:
    from app.gallery.search.index import GalleryIndex

    proc = psutil.Process()
    emb, codes, centres = synth_gallery(n_faces)
    face_ids = [f"f{i}" for i in range(n_faces)]
    identities = [f"id{c}" for c in codes.tolist()]
    queries, truth = synth_queries(centres, max(n_queries, batch))

    rss0 = proc.memory_info().rss
    index = GalleryIndex(DIM)
    t0 = time.perf_counter()
    step = 10_000
    for s in range(0, n_faces, step):
        index.add_many(face_ids[s : s + step], identities[s : s + step], emb[s : s + step])
    add_s = time.perf_counter() - t0
    rss_index = proc.memory_info().rss - rss0

    index.search(queries[:1], top_k=5)  # warm-up
    lat = []
    hits = 0
    for i in range(n_queries):
        t = time.perf_counter()
        res = index.search(queries[i : i + 1], top_k=5)
        lat.append(time.perf_counter() - t)
        hits += res[0][0][0] == f"id{truth[i]}"
    t = time.perf_counter()
    index.search(queries[:batch], top_k=5)
    batch_s = time.perf_counter() - t

    out: dict[str, Any] = {
        "faces": n_faces,
        "identities": int(codes.max()) + 1,
        "search_top5_single": percentiles(lat),
        "batch": batch,
        "batch_queries_per_s": round(batch / batch_s, 1),
        "rank1_sanity": round(hits / n_queries, 4),
        "matrix_mb": round(n_faces * DIM * 4 / 2**20, 1),
        "int8_mb": round(n_faces * DIM / 2**20, 1),
        "scan_threads": index._scan.threads,
        "rss_growth_mb": round(rss_index / 2**20, 1),
        "add_many_faces_per_s": round(n_faces / add_s, 0),
        "add_many_s": round(add_s, 3),
    }
    del index
    out.update(bench_store(emb, face_ids, identities, sqlite_rows))
    return out


def bench_store(
    emb: np.ndarray, face_ids: list[str], identities: list[str], durable_n: int
) -> dict[str, Any]:
    """Startup through the service's own SQLite store, and durable enrollment rate."""
    try:
        from app.gallery.service import GalleryService
        from app.gallery.storage.sqlite import GalleryStore
    except ImportError as e:  # the store is optional for this bench
        return {"startup_note": f"app.gallery.storage.sqlite unavailable: {e}"}
    with tempfile.TemporaryDirectory(prefix="faceid-gallery-") as tmp:
        path = Path(tmp) / "gallery.sqlite3"
        GalleryStore(path, "bench", DIM).close()  # the service's schema
        conn = sqlite3.connect(path)
        with conn:
            conn.executemany(
                "INSERT INTO faces (face_id, identity, embedding, model_version, created_at) "
                "VALUES (?, ?, ?, 'bench', '2026-01-01T00:00:00Z')",
                ((face_ids[i], identities[i], emb[i].tobytes()) for i in range(len(emb))),
            )
        conn.close()
        db_mb = path.stat().st_size / 2**20
        t = time.perf_counter()
        store = GalleryStore(path, "bench", DIM)
        service = GalleryService.open(store)
        startup_s = time.perf_counter() - t
        assert service.faces == len(emb), (service.faces, len(emb))
        t = time.perf_counter()
        rng = np.random.default_rng(2)
        for i in range(durable_n):
            store.add_face(f"new{i}", f"new{i}", rng.standard_normal(DIM), "2026-01-01T00:00:00Z")
        durable_s = time.perf_counter() - t
        store.close()
    return {
        "startup_s": round(startup_s, 3),
        "sqlite_mb": round(db_mb, 1),
        "durable_enroll_per_s": round(durable_n / durable_s, 1) if durable_n else None,
    }


# --------------------------------------------------------------------------- approximate
def ann_python(venv: Path) -> Path:
    py = venv / "bin" / "python"
    stamp = venv / ".faceid-ann-stamp"
    if py.exists() and stamp.exists() and stamp.read_text() == "\n".join(ANN_PINS):
        return py
    print(f"ann: creating {venv} ({', '.join(ANN_PINS)}) ...", file=sys.stderr)
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", *ANN_PINS], check=True)
    stamp.write_text("\n".join(ANN_PINS))
    return py


def bench_ann(n_faces: int, n_queries: int, venv: Path, args: argparse.Namespace) -> dict:
    py = ann_python(venv)
    emb, codes, centres = synth_gallery(n_faces)
    queries, _ = synth_queries(centres, n_queries)
    exact_top1 = np.empty(n_queries, dtype=np.int64)
    for s in range(0, n_queries, 256):
        exact_top1[s : s + 256] = np.argmax(queries[s : s + 256] @ emb.T, axis=1)
    with tempfile.TemporaryDirectory(prefix="faceid-ann-") as tmp:
        np.save(Path(tmp) / "g.npy", emb)
        np.save(Path(tmp) / "q.npy", queries)
        del emb
        cmd = [
            str(py),
            str(Path(__file__).with_name("ann_worker.py")),
            "--gallery",
            f"{tmp}/g.npy",
            "--queries",
            f"{tmp}/q.npy",
            "--out",
            f"{tmp}/o.npz",
            "--dtype",
            args.ann_dtype,
            "--expansion-add",
            str(args.ann_ef_add),
            "--expansion-search",
            str(args.ann_ef_search),
        ]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"ann worker failed:\n{p.stderr[-2000:]}")
        info = json.loads(p.stdout.strip().splitlines()[-1])
        with np.load(f"{tmp}/o.npz") as z:
            keys, secs = z["keys"], z["seconds"]
    recall_face = float((keys[:, 0] == exact_top1).mean())
    recall_id = float((codes[keys[:, 0]] == codes[exact_top1]).mean())
    return {
        "faces": n_faces,
        "index": f"usearch {info['usearch']} HNSW {info['dtype']} M={info['connectivity']} "
        f"ef_add={info['expansion_add']} ef_search={info['expansion_search']}",
        "search_top5_single": percentiles(list(secs)),
        "recall_at_1": round(recall_face, 4),
        "recall_at_1_identity": round(recall_id, 4),
        "build_s": round(info["build_s"], 1),
        "memory_mb": round(info["memory_bytes"] / 2**20, 1),
    }


def bench_service_ann(n_faces: int, n_queries: int) -> dict[str, Any]:
    """The service's approximate path, one query per call, against exact top-1 identities."""
    import usearch

    from app.gallery.search import ann
    from app.gallery.search.index import GalleryIndex

    emb, codes, centres = synth_gallery(n_faces)
    queries, _ = synth_queries(centres, n_queries)
    exact_top1 = np.empty(n_queries, dtype=np.int64)
    for s in range(0, n_queries, 64):
        exact_top1[s : s + 64] = codes[np.argmax(queries[s : s + 64] @ emb.T, axis=1)]
    index = GalleryIndex(DIM, ann_min_faces=1)
    t0 = time.perf_counter()
    index.add_many([f"f{i}" for i in range(n_faces)], [f"id{c}" for c in codes.tolist()], emb)
    assert index.wait_for_ann(), "approximate index build failed"
    build_s = time.perf_counter() - t0
    index.search(queries[:1], top_k=5)  # warm-up
    lat, hits = [], 0
    for i in range(n_queries):
        t = time.perf_counter()
        res = index.search(queries[i : i + 1], top_k=5)
        lat.append(time.perf_counter() - t)
        hits += res[0][0][0] == f"id{exact_top1[i]}"
    out = {
        "faces": n_faces,
        "index": f"service GalleryIndex: usearch {usearch.__version__} HNSW i8 "
        f"M={ann.CONNECTIVITY} ef_add={ann.EXPANSION_ADD} ef_search={ann.EXPANSION_SEARCH}, "
        f"{ann.BUILD_THREADS} build thread(s), exact re-score",
        "search_top5_single": percentiles(lat),
        "recall_at_1": round(hits / n_queries, 4),  # identity top-1 = exact identity top-1
        "recall_at_1_identity": round(hits / n_queries, 4),
        "build_s": round(build_s, 1),
        "memory_mb": round(index.ann_memory_bytes / 2**20, 1),
    }
    index.close()
    return out


# --------------------------------------------------------------------------- report
def markdown(result: dict[str, Any]) -> str:
    rows = []
    for r in result["exact"]:
        s = r["search_top5_single"]
        rows.append(
            {
                "faces": f"{r['faces']:,}",
                "top-5 p50 ms": s["p50_ms"],
                "top-5 p99 ms": s["p99_ms"],
                "batch-64 queries/s": r["batch_queries_per_s"],
                "float32 + int8 MB": f"{r['matrix_mb']} + {r['int8_mb']}",
                "scan threads": r.get("scan_threads", ""),
                "RSS growth MB": r["rss_growth_mb"],
                "add_many faces/s": r["add_many_faces_per_s"],
                "startup s (SQLite→index)": r.get("startup_s"),
                "durable enroll/s": r.get("durable_enroll_per_s"),
                "rank-1 (sanity)": r["rank1_sanity"],
            }
        )
    cols = list(rows[0]) if rows else []
    lines = [
        "### Gallery scale — exact search (`app.gallery.search.index.GalleryIndex`)",
        "",
        f"Machine: {machine_line(result['machine'])}",
        f"Command: `{result['command']}`",
        f"BLAS threads env: {result['blas_threads_env'] or 'unset (OpenBLAS default = all cores)'}",
        "",
        md_table(rows, cols),
    ]
    if result.get("ann"):
        arows = [
            {
                "faces": f"{a['faces']:,}",
                "index": a["index"],
                "top-5 p50 ms": a["search_top5_single"]["p50_ms"],
                "top-5 p99 ms": a["search_top5_single"]["p99_ms"],
                "recall@1": a["recall_at_1"],
                "build s": a["build_s"],
                "memory MB": a["memory_mb"],
            }
            for a in result["ann"]
        ]
        lines += ["", "### Approximate index", "", md_table(arows, list(arows[0]))]
    lines += ["", "Targets: " + "; ".join(result["targets"])]
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[str]:
    out = []
    big = [r for r in result["exact"] if r["faces"] >= 1_000_000]
    if big:
        p50 = big[0]["search_top5_single"]["p50_ms"]
        ok = p50 < TARGET_EXACT_P50_MS
        out.append(
            f"1M exact top-5 p50 {p50:.2f} ms vs < {TARGET_EXACT_P50_MS} ms: "
            + ("MET" if ok else f"MISSED by {p50 - TARGET_EXACT_P50_MS:.1f} ms")
        )
    else:
        out.append("1M exact: not run (use the full run)")
    big_ann = [a for a in result.get("ann") or [] if a["faces"] >= 1_000_000]
    if big_ann:
        a = big_ann[0]
        p50 = a["search_top5_single"]["p50_ms"]
        ok = p50 < TARGET_ANN_P50_MS and a["recall_at_1"] >= TARGET_ANN_RECALL
        out.append(
            f"1M approximate p50 {p50:.2f} ms (< {TARGET_ANN_P50_MS}) recall@1 "
            f"{a['recall_at_1']:.4f} (≥ {TARGET_ANN_RECALL}): " + ("MET" if ok else "MISSED")
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--queries", type=int, default=500, help="single queries timed per size")
    ap.add_argument("--durable", type=int, default=200, help="durable enrollments timed")
    ap.add_argument("--quick", action="store_true", help="10k faces, 100 queries")
    ap.add_argument("--ann", action="store_true", help="also an HNSW index (usearch venv)")
    ap.add_argument("--service-ann", action="store_true", help="also the service's own ANN path")
    ap.add_argument("--ann-sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--ann-venv", type=Path, default=Path("~/.cache/faceid/ann-venv"))
    ap.add_argument("--ann-dtype", default="f32")
    ap.add_argument("--ann-ef-add", type=int, default=128)
    ap.add_argument("--ann-ef-search", type=int, default=64)
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="re-run with OPENBLAS_NUM_THREADS/OMP_NUM_THREADS set to this (default: unset)",
    )
    ap.add_argument("--out", type=Path, default=None, help="results folder")
    args = ap.parse_args(argv)
    if args.blas_threads is not None and os.environ.get("OPENBLAS_NUM_THREADS") != str(
        args.blas_threads
    ):
        # BLAS reads its thread count at import: restart this process with it set.
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.blas_threads))
        env["OMP_NUM_THREADS"] = str(args.blas_threads)
        argv_full = [sys.executable, "-m", "bench.gallery", *(argv or sys.argv[1:])]
        return subprocess.run(argv_full, env=env, check=False).returncode
    sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000, 1_000_000])
    n_q = 100 if args.quick else args.queries
    durable = 20 if args.quick else args.durable
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)

    result: dict[str, Any] = {
        "command": "python -m bench.gallery "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "blas_threads_env": {
            k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ
        },
        "exact": [],
        "ann": [],
    }
    for n in sizes:
        print(f"gallery: exact, {n:,} faces ...", file=sys.stderr, flush=True)
        r = bench_exact(n, n_q, 64, durable)
        print(f"  {json.dumps(r)}", file=sys.stderr, flush=True)
        result["exact"].append(r)
    if args.ann:
        for n in args.ann_sizes or sizes:
            print(f"gallery: usearch HNSW, {n:,} faces ...", file=sys.stderr, flush=True)
            a = bench_ann(n, n_q, args.ann_venv.expanduser(), args)
            print(f"  {json.dumps(a)}", file=sys.stderr, flush=True)
            result["ann"].append(a)
    if args.service_ann:
        for n in args.ann_sizes or sizes:
            print(f"gallery: service ANN path, {n:,} faces ...", file=sys.stderr, flush=True)
            a = bench_service_ann(n, n_q)
            print(f"  {json.dumps(a)}", file=sys.stderr, flush=True)
            result["ann"].append(a)
    result["targets"] = targets(result)
    stem = "gallery" if args.blas_threads is None else f"gallery-blas{args.blas_threads}"
    write_results(out_dir, stem, result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
