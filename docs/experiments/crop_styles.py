"""Experiment (not part of the product): which face crop suits the pretrained FaceNet?

FaceNet was trained on loose, unaligned 160×160 MTCNN boxes; we feed it 5-point-aligned
ArcFace crops. This script measures, on LFW's pairsDevTrain protocol (10 folds, a pair
with a faceless image counts as an error), the pretrained FaceNet weights (no
fine-tuning) with four crops made from the same MTCNN detections, each with and without
flip test-time augmentation:

- ``arcface112_up160``: our pipeline's 112×112 ArcFace crop, upscaled to 160 (as faceid/1);
- ``arcface_at160``: the same template warped directly at 160×160 (more source pixels);
- ``sandberg_m32``: FaceNet's own recipe: the MTCNN box plus a 32-px margin, resized to 160;
- ``aligned_facenet160``: 5-point alignment onto the mean landmark positions of those
  loose crops (a looser, rotation-corrected template).

Run from the repository root (about 20 minutes on 2 cores)::

    .venv/bin/python docs/experiments/crop_styles.py --out /tmp/crop-styles

Results of the 2026-11-28 run are in ``crop_styles.json`` beside this file.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from faces.align import align_face
from faces.pipeline import FacePipeline
from training.data import read_pairs
from training.evaluate import kfold_accuracy

Crop = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def loose_box(box: np.ndarray, shape: tuple[int, ...], margin: int = 32) -> tuple[int, ...]:
    """FaceNet's crop window: the detector box grown by margin/2 per side, clipped."""
    h, w = shape[:2]
    return (
        max(int(box[0] - margin / 2), 0),
        max(int(box[1] - margin / 2), 0),
        min(int(box[2] + margin / 2), w),
        min(int(box[3] + margin / 2), h),
    )


def sandberg_crop(rgb: np.ndarray, box: np.ndarray, size: int = 160) -> np.ndarray:
    x1, y1, x2, y2 = loose_box(box, rgb.shape)
    resized = Image.fromarray(rgb[y1:y2, x1:x2]).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/lfw"))
    ap.add_argument("--out", type=Path, required=True, help="detections cache and results")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    pairs = read_pairs(args.data / "pairsDevTrain.txt")
    files = sorted({(p[0], p[1]) for p in pairs} | {(p[2], p[3]) for p in pairs})
    pipeline = FacePipeline()

    def pixels(i: int) -> np.ndarray:
        name, file = files[i]
        return pipeline.decode((args.data / "train" / name / file).read_bytes()).pixels

    cache = args.out / "detections.npz"
    if cache.exists():
        saved = np.load(cache)
        boxes, marks = saved["boxes"], saved["landmarks"]
    else:
        boxes = np.full((len(files), 4), np.nan)
        marks = np.full((len(files), 5, 2), np.nan)
        for i in range(len(files)):
            faces = pipeline.detector.detect(pixels(i))
            if faces:
                boxes[i], marks[i] = faces[0].box, faces[0].landmarks
            if i % 500 == 0:
                print(f"detected {i}/{len(files)}", flush=True)
        np.savez(cache, boxes=boxes, landmarks=marks)
    found = np.isfinite(boxes[:, 0])

    # The loose crop's mean landmark positions (a 160×160 template for alignment).
    loose_marks = []
    for i in np.flatnonzero(found):
        x1, y1, x2, y2 = loose_box(boxes[i], (250, 250))
        scale = np.array([160 / (x2 - x1), 160 / (y2 - y1)])
        loose_marks.append((marks[i] - [x1, y1]) * scale)
    template160 = np.mean(loose_marks, axis=0)

    def upscaled(rgb: np.ndarray, box: np.ndarray, lm: np.ndarray) -> np.ndarray:
        crop = Image.fromarray(align_face(rgb, lm, 112)[0])
        return np.asarray(crop.resize((160, 160), Image.Resampling.BILINEAR))

    styles: dict[str, Crop] = {
        "arcface112_up160": upscaled,
        "arcface_at160": lambda rgb, box, lm: align_face(rgb, lm, 160)[0],
        "sandberg_m32": lambda rgb, box, lm: sandberg_crop(rgb, box),
        "aligned_facenet160": lambda rgb, box, lm: align_face(rgb, lm, 160, template160)[0],
    }

    import keras

    from training.backbones.facenet import Prewhiten, build_facenet_core, facenet_h5_path

    core = build_facenet_core(facenet_h5_path(), input_size=160)
    inputs = keras.Input((160, 160, 3))
    model = keras.Model(inputs, core(Prewhiten()(inputs)))

    def embed(crops: np.ndarray, flip: bool) -> np.ndarray:
        e = model.predict(crops, batch_size=64, verbose=0)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        if flip:
            f = model.predict(crops[:, :, ::-1], batch_size=64, verbose=0)
            e = e + f / np.linalg.norm(f, axis=1, keepdims=True)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    index = {key: i for i, key in enumerate(files)}
    same = np.array([p[4] for p in pairs])
    results: dict[str, float] = {}
    for name, crop in styles.items():
        t0 = time.time()
        crops = np.zeros((len(files), 160, 160, 3), np.float32)
        for i in np.flatnonzero(found):
            crops[i] = crop(pixels(i), boxes[i], marks[i])
        for flip in (False, True):
            emb = embed(crops, flip)
            scores = np.array(
                [
                    float(emb[index[(a, fa)]] @ emb[index[(b, fb)]])
                    if found[index[(a, fa)]] and found[index[(b, fb)]]
                    else np.nan
                    for a, fa, b, fb, _ in pairs
                ]
            )
            key = name + ("+flip" if flip else "")
            results[key] = round(kfold_accuracy(scores, same)["accuracy"], 4)
            print(f"{key}: {results[key]:.4f} ({time.time() - t0:.0f} s)", flush=True)
    summary = {
        "protocol": "LFW pairsDevTrain, 10-fold; faceless pairs count as errors",
        "model": "pretrained FaceNet (facenet_keras.h5), no fine-tuning",
        "pairs": len(pairs),
        "images_without_face": int((~found).sum()),
        "template160": np.round(template160, 2).tolist(),
        "accuracy": results,
    }
    (args.out / "crop_styles.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
