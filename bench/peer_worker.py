"""Runs INSIDE the peer virtual environment (face_recognition 1.3 + dlib); stdlib + numpy only.

Reads image paths (one per line), runs face_recognition's usual calls on each, in this one
process, and writes an ``.npz``:

- ``encodings``  N×128 float64, the encoding of the largest face (NaN row: no face found)
- ``n_faces``    faces detected per image
- ``boxes``      N×4 (top, right, bottom, left) of the largest face, -1 when none
- ``seconds``    wall time per image: decode + detect + encode (the timed unit)
- ``detect_s`` / ``encode_s``  the parts

and prints one JSON line with the totals. The main benchmark process never imports dlib.

    python peer_worker.py --list paths.txt --out enc.npz [--model hog] [--upsample 1]
                          [--jitters 1] [--all-faces]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


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
    args = ap.parse_args(argv)

    t_import = time.perf_counter()
    import dlib
    import face_recognition

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

    def run_one(path: str) -> tuple[list, list, float, float]:
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
        return locs, encs, t2 - t1, t3 - t2

    if paths:  # warm-up, untimed (first-call allocations)
        run_one(paths[0])
    t_all = time.perf_counter()
    cpu0 = time.process_time()
    for i, path in enumerate(paths):
        t0 = time.perf_counter()
        locs, encs, d, e = run_one(path)
        seconds[i] = time.perf_counter() - t0
        detect_s[i], encode_s[i] = d, e
        n_faces[i] = len(locs)
        if encs:
            enc[i] = encs[0]
            boxes[i] = locs[0]
        if (i + 1) % 200 == 0:
            print(f"peer: {i + 1}/{n} images", file=sys.stderr, flush=True)
    total = time.perf_counter() - t_all
    cpu_s = time.process_time() - cpu0
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
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
