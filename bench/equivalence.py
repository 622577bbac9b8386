"""The fast detector against the reference, and the lean engines against the in-process
ones, on LFW pairs: same faces, same crops, same answers.

For ``--pairs`` pairs of LFW ``pairsDevTrain.txt`` (spread over genuine and impostor
pairs), every distinct image goes through the face pipeline three times — mtcnn 1.0.0's
own code path (``reference``), the TensorFlow Lite path converted and run by TensorFlow in
this process (``lite``, the service as it was), and the lean path the service now runs
(``lean``: the same flatbuffers converted in a child process, cached, run on LiteRT) — and
the largest face of each is embedded: ``reference`` and ``lite`` crops with the in-process
``tflite-int8-tf`` engine, ``lean`` crops with the lean ``tflite-int8`` engine. Reports
face-count mismatches, the largest box and landmark difference, aligned-crop pixel
differences and the lowest embedding cosine of ``lite`` against ``reference`` and of
``lean`` against ``lite`` (the lean engine's embedding must stay within cosine 0.9999 of
the in-process engine's), and the pair verification accuracy of each path at the model's
threshold (a missing face counts as a wrong answer), all in one run.

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

    import tempfile

    from app.inference.engines import open_engines
    from app.inference.model import EmbeddingModel, load_card
    from app.settings import Settings
    from faces import ALIGNED_SIZE, FaceDetector, align_face, decode_image

    settings = Settings()
    card = load_card(settings.model_dir)
    model = EmbeddingModel(settings.model_dir, card, engine="tflite-int8-tf")
    with tempfile.TemporaryDirectory(prefix="faceid-equivalence-") as cache:
        lean = open_engines(settings.model_dir, card, "tflite-int8", cache_dir=Path(cache))
    models = {"reference": model, "lite": model, "lean": lean.model}
    detectors = {
        name: FaceDetector(min_face_size=settings.min_face_size, backend=name)
        for name in ("reference", "lite")
    }
    detectors["lean"] = FaceDetector(
        min_face_size=settings.min_face_size, backend="lite", lite_nets=lean.lite_nets
    )
    # (path compared, path it is compared with)
    comparisons = (("lite", "reference"), ("lean", "lite"))
    all_pairs = read_pairs(args.data)
    half = len(all_pairs) // 2
    n = min(args.pairs, len(all_pairs))
    pairs = spread(all_pairs[:half], n // 2) + spread(all_pairs[half:], n - n // 2)
    images = sorted({p for a, b, _ in pairs for p in (a, b)})

    seconds = {name: 0.0 for name in detectors}
    emb: dict[str, dict[Path, np.ndarray | None]] = {name: {} for name in detectors}
    faces_total = 0
    diffs: dict[tuple[str, str], dict[str, Any]] = {
        pair: {"count": 0, "box": 0.0, "mark": 0.0, "crop_max": 0.0, "crop_mean": [], "cos": []}
        for pair in comparisons
    }
    for i, path in enumerate(images):
        pixels = decode_image(path.read_bytes()).pixels
        found: dict[str, list[Any]] = {}
        for name, det in detectors.items():
            t0 = time.process_time()
            found[name] = det.detect(pixels)
            seconds[name] += time.process_time() - t0
        faces_total += len(found["reference"])
        crops = {}
        for name, faces in found.items():
            if faces:
                crops[name] = align_face(pixels, faces[0].landmarks, ALIGNED_SIZE)[0]
                emb[name][path] = models[name].embed(crops[name][None])[0]
            else:
                emb[name][path] = None
        for pair in comparisons:
            d, (a_name, b_name) = diffs[pair], pair
            a_faces, b_faces = found[a_name], found[b_name]
            if len(a_faces) != len(b_faces):
                d["count"] += 1
            for a, b in zip(a_faces, b_faces, strict=False):
                d["box"] = max(d["box"], float(np.abs(np.subtract(a.box, b.box)).max()))
                d["mark"] = max(d["mark"], float(np.abs(a.landmarks - b.landmarks).max()))
            if a_name in crops and b_name in crops:
                px = np.abs(crops[a_name].astype(int) - crops[b_name].astype(int))
                d["crop_max"] = max(d["crop_max"], float(px.max()))
                d["crop_mean"].append(float(px.mean()))
                d["cos"].append(float(emb[a_name][path] @ emb[b_name][path]))  # type: ignore[operator]
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
                "path": name,
                "embedding engine": models[name].engine,
                "images": len(images),
                "no face": sum(v is None for v in emb[name].values()),
                "pairs": len(pairs),
                f"accuracy at threshold {threshold:.3f}": round(right / len(pairs), 4),
                "detect CPU ms/img": round(seconds[name] / len(images) * 1000, 2),
            }
        )
    summaries = []
    for (a_name, b_name), d in diffs.items():
        summaries.append(
            {
                "compared": f"{a_name} vs {b_name}",
                "faces (reference)": faces_total,
                "images whose face count differs": d["count"],
                "max box difference px": round(d["box"], 4),
                "max landmark difference px": round(d["mark"], 4),
                "aligned crops: max pixel difference": d["crop_max"],
                "aligned crops: mean pixel difference": round(float(np.mean(d["crop_mean"])), 5)
                if d["crop_mean"]
                else None,
                "min embedding cosine": round(min(d["cos"]), 6) if d["cos"] else None,
            }
        )
    result = {
        "command": "python -m bench.equivalence "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "engines": {name: m.engine for name, m in models.items()},
        "rows": rows,
        "summary": summaries,
        "load_after": round(os.getloadavg()[0], 2),
    }
    md = "\n".join(
        [
            "### Detector and engine equivalence — `lite` vs `reference`, `lean` vs `lite` "
            "on LFW pairsDevTrain",
            "",
            f"Machine: {machine_line(result['machine'])}; load {result['load_after']} at end",
            f"Command: `{result['command']}`; embedding engines "
            + ", ".join(f"{name}: {m.engine}" for name, m in models.items()),
            "",
            md_table(rows, list(rows[0])),
            "",
            md_table(summaries, list(summaries[0])),
        ]
    )
    write_results(out_dir, "equivalence", result, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
