"""The fast detector against the reference on LFW pairs: same faces, same crops, same answers.

For ``--pairs`` pairs of LFW ``pairsDevTrain.txt`` (spread over genuine and impostor
pairs), every distinct image goes through the face pipeline twice — mtcnn 1.0.0's own code
path (``reference``) and the TensorFlow Lite path (``lite``) — and the largest face of each
is embedded with the service's engine. Reports face-count mismatches, the largest box and
landmark difference, aligned-crop pixel differences, the lowest embedding cosine between
the two paths, and the pair verification accuracy of each path at the model's threshold
(a missing face counts as a wrong answer), all in one run.

    python -m bench.equivalence               # 2,200 pairs (3,443 images)
    python -m bench.equivalence --pairs 400
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    DEFAULT_DATA,
    RESULTS,
    machine_info,
    machine_line,
    md_table,
    read_pairs,
    spread,
    write_results,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--pairs", type=int, default=2200)
    ap.add_argument("--quick", action="store_true", help="40 pairs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.pairs = 40
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)

    from app.inference.model import EmbeddingModel, load_card
    from app.settings import Settings
    from faces import ALIGNED_SIZE, FaceDetector, align_face, decode_image

    settings = Settings()
    card = load_card(settings.model_dir)
    model = EmbeddingModel(settings.model_dir, card, engine=settings.engine)
    detectors = {
        name: FaceDetector(min_face_size=settings.min_face_size, backend=name)
        for name in ("reference", "lite")
    }
    all_pairs = read_pairs(args.data)
    half = len(all_pairs) // 2
    n = min(args.pairs, len(all_pairs))
    pairs = spread(all_pairs[:half], n // 2) + spread(all_pairs[half:], n - n // 2)
    images = sorted({p for a, b, _ in pairs for p in (a, b)})

    seconds = {name: 0.0 for name in detectors}
    emb: dict[str, dict[Path, np.ndarray | None]] = {name: {} for name in detectors}
    count_mismatch, faces_total = 0, 0
    box_diff = mark_diff = crop_max = 0.0
    crop_mean: list[float] = []
    cosines: list[float] = []
    for i, path in enumerate(images):
        pixels = decode_image(path.read_bytes()).pixels
        found: dict[str, list[Any]] = {}
        for name, det in detectors.items():
            t0 = time.process_time()
            found[name] = det.detect(pixels)
            seconds[name] += time.process_time() - t0
        ref, lite = found["reference"], found["lite"]
        faces_total += len(ref)
        if len(ref) != len(lite):
            count_mismatch += 1
        for a, b in zip(ref, lite, strict=False):
            box_diff = max(box_diff, float(np.abs(np.subtract(a.box, b.box)).max()))
            mark_diff = max(mark_diff, float(np.abs(a.landmarks - b.landmarks).max()))
        crops = {}
        for name, faces in found.items():
            if faces:
                crops[name] = align_face(pixels, faces[0].landmarks, ALIGNED_SIZE)[0]
                emb[name][path] = model.embed(crops[name][None])[0]
            else:
                emb[name][path] = None
        if len(crops) == 2:
            d = np.abs(crops["reference"].astype(int) - crops["lite"].astype(int))
            crop_max = max(crop_max, float(d.max()))
            crop_mean.append(float(d.mean()))
            cosines.append(float(emb["reference"][path] @ emb["lite"][path]))  # type: ignore[operator]
        if (i + 1) % 200 == 0:
            print(f"equivalence: {i + 1}/{len(images)}", file=sys.stderr, flush=True)

    threshold = card.threshold
    rows = []
    for name in detectors:
        right = 0
        for a, b, same in pairs:
            ea, eb = emb[name][a], emb[name][b]
            if ea is not None and eb is not None:
                right += int((float(ea @ eb) >= threshold) == same)
        rows.append(
            {
                "detector": name,
                "images": len(images),
                "no face": sum(v is None for v in emb[name].values()),
                "pairs": len(pairs),
                f"accuracy at threshold {threshold:.3f}": round(right / len(pairs), 4),
                "detect CPU ms/img": round(seconds[name] / len(images) * 1000, 2),
            }
        )
    summary = {
        "faces (reference)": faces_total,
        "images whose face count differs": count_mismatch,
        "max box difference px": round(box_diff, 4),
        "max landmark difference px": round(mark_diff, 4),
        "aligned crops: max pixel difference": crop_max,
        "aligned crops: mean pixel difference": round(float(np.mean(crop_mean)), 5)
        if crop_mean
        else None,
        "min embedding cosine (reference vs lite)": round(min(cosines), 6) if cosines else None,
    }
    result = {
        "command": "python -m bench.equivalence "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "engine": model.engine,
        "rows": rows,
        "summary": summary,
        "load_after": round(os.getloadavg()[0], 2),
    }
    md = "\n".join(
        [
            "### Detector equivalence — `lite` vs `reference` on LFW pairsDevTrain",
            "",
            f"Machine: {machine_line(result['machine'])}; load {result['load_after']} at end",
            f"Command: `{result['command']}`; embedding engine {model.engine}",
            "",
            md_table(rows, list(rows[0])),
            "",
            md_table([summary], list(summary)),
        ]
    )
    write_results(out_dir, "equivalence", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
