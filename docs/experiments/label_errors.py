"""Label errors in the validation data and the open-set false alarms they cause (issue 9).

Two reports over the validation embeddings that ``python -m training calibrate`` caches
(``runs/calibration/faceid-2/val_embeddings.npz``) and the aligned-crop cache:

- ``pairs``: every pair of validation faces with *different* labels that the model scores at
  cosine >= ``--min-score`` (default 0.70), grouped by identity pair, highest first: the list
  that was reviewed by eye to write ``training/data_fixes.json``;
- ``alarms``: replays ``training.calibrate.open_set_protocol`` (same seeds, same draws) on
  the data as it is and counts, per gallery size, photos per identity and target, the
  strangers named as someone and how many of them ``training/data_fixes.json`` explains
  (a photo listed there, or two labels of one person).

    FACEID_CACHE_DIR=/work/cache/aligned python docs/experiments/label_errors.py pairs
    FACEID_CACHE_DIR=/work/cache/aligned python docs/experiments/label_errors.py alarms
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from faces.open_set import threshold_for_fpir
from training.calibrate import (
    DATA_FIXES,
    Faces,
    _choose_templates,
    fit_calibration,
    identity_scores,
    run_gallery,
)
from training.data import load_cache


def load(embeddings: Path) -> tuple[Faces, list[str], list[str]]:
    z = np.load(embeddings)
    keys = [str(k) for k in z["keys"]]
    cache = load_cache(Path(os.environ["FACEID_CACHE_DIR"]), ["lfw", "celeba", "orl"])
    files = [f"{k}/{f}" for k in keys for f in cache[k].files]
    return Faces(z["embeddings"], z["labels"], z["quality"]), keys, files


def pairs(faces: Faces, keys: list[str], files: list[str], min_score: float) -> None:
    sims = faces.embeddings @ faces.embeddings.T
    i, j = np.triu_indices(len(faces.labels), 1)
    keep = (faces.labels[i] != faces.labels[j]) & (sims[i, j] >= min_score)
    groups: dict[tuple[str, str], list[tuple[float, str, str]]] = {}
    for a, b in zip(i[keep], j[keep], strict=True):
        ka, kb = sorted((keys[faces.labels[a]], keys[faces.labels[b]]))
        groups.setdefault((ka, kb), []).append((float(sims[a, b]), files[a], files[b]))
    print(f"{int(keep.sum())} face pairs in {len(groups)} identity pairs >= {min_score}")
    for (ka, kb), found in sorted(groups.items(), key=lambda kv: -max(kv[1])[0]):
        best = max(found)
        print(f"{ka:36s} {kb:36s} n={len(found):4d} max={best[0]:.3f}  {best[1]} ~ {best[2]}")


def alarms(faces: Faces, keys: list[str], files: list[str], repeats: int) -> None:
    fixes = json.loads(DATA_FIXES.read_text(encoding="utf-8"))
    person = {k: group[0] for group in fixes["same_person"] for k in group}
    wrong = set(fixes["largest_face_is_someone_else"])

    def explained(probe: int, identity: int) -> bool:
        a, b = keys[faces.labels[probe]], keys[identity]
        return files[probe] in wrong or (a in person and person.get(b) == person[a])

    rng = np.random.default_rng(0)  # as open_set_protocol
    people = np.unique(faces.labels)
    sizes = (10, 100, 1000)
    n_cal = round(0.4 * len(people))
    n_cal = max(min(n_cal, len(people) - math.ceil(max(sizes) / 0.75)), len(people) // 4)
    counts: dict[tuple[int, int, float], list[int]] = {}
    for r in range(repeats):
        perm = rng.permutation(people)
        cal, test = perm[:n_cal], perm[n_cal:]
        calibration = fit_calibration(faces.subset(np.isin(faces.labels, cal)), "centroid", seed=r)
        biggest = int(len(test) * 0.75)
        for n in [s for s in sizes if s < biggest] + [biggest]:
            for t in (1, 3):
                order = rng.permutation(test)
                state = rng.bit_generator.state
                run = run_gallery(faces, order[:n], order[n:], t, "centroid", rng)
                rng.bit_generator.state = state  # draw the same templates again
                chosen, _ = _choose_templates(faces.labels, order[:n], t, rng)
                strangers = np.nonzero(np.isin(faces.labels, order[n:]))[0]
                scores, ids = identity_scores(
                    faces.embeddings[strangers],
                    faces.embeddings[chosen],
                    faces.labels[chosen],
                    "centroid",
                )
                best = np.argmax(scores, axis=1)
                top = scores[np.arange(len(strangers)), best]
                for target in (0.001, 0.01):
                    thr = threshold_for_fpir(calibration, target, n, run.faces_per_identity)
                    hits = np.nonzero(top >= thr)[0]
                    label_errors = sum(explained(strangers[h], ids[best[h]]) for h in hits)
                    c = counts.setdefault((n, t, target), [0, 0, 0])
                    c[0] += len(hits)
                    c[1] += label_errors
                    c[2] += len(strangers)
    for (n, t, target), (named, label_errors, total) in sorted(counts.items()):
        print(
            f"{n:5d} people, up to {t} photos, target {target:.1%}: {named} strangers named "
            f"of {total} ({named / total:.3%}), {label_errors} of them label errors; without "
            f"those {(named - label_errors) / total:.3%}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("report", choices=("pairs", "alarms"))
    ap.add_argument(
        "--embeddings",
        type=Path,
        default=ROOT / "runs" / "calibration" / "faceid-2" / "val_embeddings.npz",
    )
    ap.add_argument("--min-score", type=float, default=0.70)
    ap.add_argument("--repeats", type=int, default=100)
    args = ap.parse_args()
    faces, keys, files = load(args.embeddings)
    if args.report == "pairs":
        pairs(faces, keys, files, args.min_score)
    else:
        alarms(faces, keys, files, args.repeats)


if __name__ == "__main__":
    main()
