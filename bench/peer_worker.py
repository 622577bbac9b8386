"""Runs INSIDE the peer virtual environment (face_recognition 1.3 + dlib); stdlib + numpy only.

Reads image paths (one per line), runs face_recognition's usual calls on each and writes an
``.npz``. By default everything runs in this one process, one image after another. With
``--processes N`` the images go to a ``multiprocessing`` pool of N worker processes (how a
user spreads face_recognition over N cores) from ``--clients K`` threads, each sending its
next image when the previous one is back, like K clients of a service; then ``seconds``
is each image's latency (queueing included) and the totals are the pool's throughput.
The ``.npz``:

- ``encodings``  N×128 float64, the encoding of the largest face (NaN row: no face found)
- ``n_faces``    faces detected per image
- ``boxes``      N×4 (top, right, bottom, left) of the largest face, -1 when none
- ``seconds``    wall time per image: decode + detect + encode (the timed unit)
- ``detect_s`` / ``encode_s``  the parts

and prints one JSON line with the totals. The main benchmark process never imports dlib.

    python peer_worker.py --list paths.txt --out enc.npz [--model hog] [--upsample 1]
                          [--jitters 1] [--all-faces] [--processes 2 --clients 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import numpy as np

_ARGS: Any = None


def _init_worker(args: Any) -> None:
    """Pool initializer: import face_recognition once per worker process."""
    global _ARGS
    _ARGS = args
    import face_recognition  # noqa: F401


def run_one(path: str, args: Any = None) -> tuple[list, list, float, float]:
    """Decode, detect and encode one image: (boxes largest first, encodings, detect s, encode s)."""
    import face_recognition

    args = args or _ARGS
    img = face_recognition.load_image_file(path)
    t1 = time.perf_counter()
    locs = face_recognition.face_locations(
        img, number_of_times_to_upsample=args.upsample, model=args.model
    )
    t2 = time.perf_counter()
    if locs:
        locs = sorted(locs, key=lambda b: -(b[2] - b[0]) * (b[1] - b[3]))  # largest first
        todo = locs if args.all_faces else locs[:1]
        encs = face_recognition.face_encodings(
            img, todo, num_jitters=args.jitters, model=args.landmarks
        )
    else:
        encs = []
    t3 = time.perf_counter()
    return locs, [np.asarray(e) for e in encs], t2 - t1, t3 - t2


def _pool_cpu_seconds(pool: Any) -> float:
    """User+system CPU seconds of the pool's worker processes so far (Linux /proc)."""
    import os

    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for proc in getattr(pool, "_pool", []):
        try:
            with open(f"/proc/{proc.pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def run_pool(args: Any, paths: list[str]) -> tuple[list, float, float]:
    """All images through a pool of ``args.processes`` workers from ``args.clients``
    threads; returns (per-image results with latency, wall seconds, pool CPU seconds)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    results: list[Any] = [None] * len(paths)
    with ctx.Pool(args.processes, initializer=_init_worker, initargs=(args,)) as pool:
        # Warm-up, untimed: every worker decodes, detects and encodes one image.
        pool.map(run_one, [paths[0]] * args.processes, chunksize=1)
        lock = threading.Lock()
        nxt = 0

        def client() -> None:
            nonlocal nxt
            while True:
                with lock:
                    if nxt >= len(paths):
                        return
                    i = nxt
                    nxt += 1
                t0 = time.perf_counter()
                out = pool.apply(run_one, (paths[i],))
                results[i] = (*out, time.perf_counter() - t0)

        cpu0 = _pool_cpu_seconds(pool)
        t_all = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_all
        cpu = _pool_cpu_seconds(pool) - cpu0
    return results, wall, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", required=True, help="file with one image path per line")
    ap.add_argument("--out", required=True, help="output .npz")
    ap.add_argument("--model", default="hog", choices=["hog", "cnn"], help="face detector")
    ap.add_argument("--upsample", type=int, default=1, help="number_of_times_to_upsample")
    ap.add_argument("--jitters", type=int, default=1, help="num_jitters for encodings")
    ap.add_argument("--landmarks", default="small", choices=["small", "large"])
    ap.add_argument(
        "--all-faces",
        action="store_true",
        help="encode every detected face (as /identify does), not only the largest",
    )
    ap.add_argument("--processes", type=int, default=1, help="worker processes (a pool)")
    ap.add_argument("--clients", type=int, default=1, help="images in flight at once")
    args = ap.parse_args(argv)

    t_import = time.perf_counter()
    import dlib
    import face_recognition  # noqa: F401  (import time is reported)

    import_s = time.perf_counter() - t_import
    with open(args.list, encoding="utf-8") as fh:
        paths = [p for p in fh.read().splitlines() if p]
    n = len(paths)
    enc = np.full((n, 128), np.nan)
    n_faces = np.zeros(n, dtype=np.int32)
    boxes = np.full((n, 4), -1, dtype=np.int32)
    seconds = np.zeros(n)
    detect_s = np.zeros(n)
    encode_s = np.zeros(n)

    if args.processes > 1 or args.clients > 1:
        rows, total, cpu_s = run_pool(args, paths)
    else:
        rows = []
        if paths:  # warm-up, untimed (first-call allocations)
            run_one(paths[0], args)
        t_all = time.perf_counter()
        cpu0 = time.process_time()
        for path in paths:
            t0 = time.perf_counter()
            out = run_one(path, args)
            rows.append((*out, time.perf_counter() - t0))
        total = time.perf_counter() - t_all
        cpu_s = time.process_time() - cpu0
    for i, (locs, encs, d, e, sec) in enumerate(rows):
        seconds[i] = sec
        detect_s[i], encode_s[i] = d, e
        n_faces[i] = len(locs)
        if encs:
            enc[i] = encs[0]
            boxes[i] = locs[0]
    np.savez(
        args.out,
        encodings=enc,
        n_faces=n_faces,
        boxes=boxes,
        seconds=seconds,
        detect_s=detect_s,
        encode_s=encode_s,
    )
    summary = {
        "images": n,
        "total_s": total,
        "images_per_s": n / total if total > 0 else None,
        "no_face": int((n_faces == 0).sum()),
        "cpu_s": cpu_s,
        "cores_used": cpu_s / total if total > 0 else None,
        "import_s": import_s,
        "dlib": dlib.__version__,
        "dlib_cuda": bool(getattr(dlib, "DLIB_USE_CUDA", False)),
        "detector": args.model,
        "upsample": args.upsample,
        "jitters": args.jitters,
        "landmarks": args.landmarks,
        "all_faces": args.all_faces,
        "processes": args.processes,
        "clients": args.clients,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
