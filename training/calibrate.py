"""Open-set calibration: fit the impostor tail the service derives thresholds from, and
prove it on galleries of people the fit never saw.

``fit_calibration`` measures, on identity-disjoint validation people, the score of a probe
against a *non-mated* enrolled identity (with 1, 2, 3 and 5 faces per identity, combined
by the chosen aggregation) and keeps its upper tail (``faces.open_set.fit_tail``).

``open_set_protocol`` is the proof. Each repeat splits the validation people at random
into a calibration part (40 %, or less when the test part would otherwise be too small for
the largest gallery asked for and its strangers) and a test part, fits the tail on the
first only,
then builds open-set galleries of N identities from the test part with up to t photos each;
the test part's other people are the strangers. For each target FPIR it derives the
threshold exactly as the service does (``faces.open_set.threshold_for_fpir``) and records
the achieved FPIR (strangers named as someone) and FNIR (enrolled people not named, or
named wrongly), with and without the probe quality floor.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faces.model_contract import Aggregation, Calibration
from faces.open_set import fit_tail, threshold_for_fpir
from training.calibration_plots import PlotData, plot_calibration

log = logging.getLogger(__name__)

AGGREGATIONS: tuple[Aggregation, ...] = ("max", "mean", "centroid")
TEMPLATE_COUNTS = (1, 2, 3, 5)


@dataclass(frozen=True)
class Faces:
    """Embeddings of validation faces with their person labels and quality scores."""

    embeddings: np.ndarray  # N×D, L2-normalised
    labels: np.ndarray  # N person ids
    quality: np.ndarray  # N quality scores in [0, 1]

    def subset(self, mask: np.ndarray) -> Faces:
        return Faces(self.embeddings[mask], self.labels[mask], self.quality[mask])


DATA_FIXES = Path(__file__).with_name("data_fixes.json")


def apply_data_fixes(
    faces: Faces, keys: Sequence[str], files: Sequence[str], fixes: dict[str, Any]
) -> tuple[Faces, dict[str, int]]:
    """``faces`` with the label errors of ``fixes`` corrected (``training/data_fixes.json``):
    identities listed as one person get one label, and photos whose largest face belongs to
    someone else are dropped. ``keys[label]`` names each label's identity and ``files[i]``
    face ``i``'s photo (``<dataset>/<identity>/<file>``). Returns the counts it changed."""
    if len(files) != len(faces.labels):
        raise ValueError(f"{len(files)} file names for {len(faces.labels)} faces")
    labels = faces.labels.copy()
    index = {k: i for i, k in enumerate(keys)}
    merged = 0
    for group in fixes.get("same_person", []):
        present = [index[k] for k in group if k in index]
        for other in present[1:]:
            merged += int(np.sum(labels == other))
            labels[labels == other] = present[0]
    wrong = set(fixes.get("largest_face_is_someone_else", []))
    keep = np.asarray([f not in wrong for f in files], dtype=bool)
    fixed = Faces(faces.embeddings[keep], labels[keep], faces.quality[keep])
    return fixed, {"faces_relabelled": merged, "faces_dropped": int(np.sum(~keep))}


def identity_scores(
    probes: np.ndarray, templates: np.ndarray, owners: np.ndarray, aggregation: Aggregation
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every probe against every enrolled identity: (P×I scores, I identities).

    ``templates`` are enrolled faces (rows), ``owners`` their identity per row. ``max``:
    the best face; ``mean``: the mean of the face scores; ``centroid``: cosine with the
    normalised mean of the identity's faces.
    """
    order = np.argsort(owners, kind="stable")
    templates, owners = templates[order], owners[order]
    ids, starts, counts = np.unique(owners, return_index=True, return_counts=True)
    if aggregation == "centroid":
        sums = np.add.reduceat(templates, starts, axis=0)
        centroids = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        return probes @ centroids.T, ids
    sims = probes @ templates.T
    if aggregation == "max":
        return np.maximum.reduceat(sims, starts, axis=1), ids
    return np.add.reduceat(sims, starts, axis=1) / counts, ids


def _choose_templates(
    labels: np.ndarray, people: np.ndarray, templates: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of up to ``templates`` faces per person (people with fewer keep all but
    one, so a mated probe remains), and the indices of the remaining faces."""
    chosen, rest = [], []
    for p in people:
        idx = rng.permutation(np.nonzero(labels == p)[0])
        keep = min(templates, len(idx) - 1) if len(idx) > 1 else 1
        chosen.extend(idx[:keep].tolist())
        rest.extend(idx[keep:].tolist())
    return np.asarray(chosen, dtype=int), np.asarray(rest, dtype=int)


def nonmated_identity_scores(
    faces: Faces, templates: int, aggregation: Aggregation, seed: int = 0
) -> np.ndarray:
    """Every probe face's score against every enrolled identity that is not its own, with
    ``templates`` faces per enrolled identity (only people with that many faces enrol)."""
    rng = np.random.default_rng(seed)
    people, counts = np.unique(faces.labels, return_counts=True)
    enrolled = people[counts >= templates]
    chosen = []
    for p in enrolled:
        chosen.extend(rng.permutation(np.nonzero(faces.labels == p)[0])[:templates].tolist())
    idx = np.asarray(chosen, dtype=int)
    gallery = np.zeros(len(faces.labels), dtype=bool)
    gallery[idx] = True
    probes = np.nonzero(~gallery)[0]
    scores, ids = identity_scores(
        faces.embeddings[probes], faces.embeddings[idx], faces.labels[idx], aggregation
    )
    nonmated = faces.labels[probes][:, None] != ids[None, :]
    return scores[nonmated]


def fit_calibration(
    faces: Faces,
    aggregation: Aggregation,
    template_counts: Sequence[int] = TEMPLATE_COUNTS,
    source: str = "",
    seed: int = 0,
) -> Calibration:
    """The card's ``calibration``: one impostor tail per template count that the data
    supports (at least 50 people with that many faces)."""
    return fit_calibration_with_scores(faces, aggregation, template_counts, source, seed)[0]


def fit_calibration_with_scores(
    faces: Faces,
    aggregation: Aggregation,
    template_counts: Sequence[int] = TEMPLATE_COUNTS,
    source: str = "",
    seed: int = 0,
) -> tuple[Calibration, dict[int, np.ndarray]]:
    """:func:`fit_calibration`, and the non-mated scores each tail was fitted to (by
    template count), which the tail picture draws."""
    _people, counts = np.unique(faces.labels, return_counts=True)
    tails = []
    scores_by_templates = {}
    for t in template_counts:
        if int(np.sum(counts >= t)) < 50:
            log.info("calibration: too few people with %d faces; skipping that tail", t)
            continue
        scores = nonmated_identity_scores(faces, t, aggregation, seed)
        tails.append(fit_tail(scores, templates=t))
        scores_by_templates[t] = scores
        log.info("calibration: %d faces per identity: %d non-mated scores", t, len(scores))
    calibration = Calibration(aggregation=aggregation, tails=tails, source=source)
    return calibration, scores_by_templates


@dataclass(frozen=True)
class GalleryRun:
    """One open-set gallery of the protocol, probed by mated and stranger faces."""

    identities: int
    faces_per_identity: float
    mated_top: np.ndarray  # best identity score per mated probe
    mated_correct: np.ndarray  # the best identity is the right one
    mated_quality: np.ndarray
    stranger_top: np.ndarray  # best identity score per stranger probe
    stranger_quality: np.ndarray

    def rates(self, threshold: float, quality_floor: float = 0.0) -> tuple[float, float]:
        """(FPIR, FNIR) at ``threshold``; faces under ``quality_floor`` are never named."""
        named_strangers = (self.stranger_top >= threshold) & (
            self.stranger_quality >= quality_floor
        )
        hits = self.mated_correct & (self.mated_top >= threshold)
        hits &= self.mated_quality >= quality_floor
        return float(np.mean(named_strangers)), float(1.0 - np.mean(hits))

    def threshold_at_fpir(self, fpir: float) -> float:
        """Oracle: the lowest threshold whose FPIR on these strangers is at most ``fpir``."""
        ranked = np.sort(self.stranger_top)[::-1]
        k = int(np.floor(fpir * len(ranked)))
        return float(np.nextafter(ranked[k], np.inf)) if k < len(ranked) else float(ranked[-1])


def run_gallery(
    faces: Faces,
    enrolled: np.ndarray,
    strangers: np.ndarray,
    templates: int,
    aggregation: Aggregation,
    rng: np.random.Generator,
) -> GalleryRun:
    """Enrol ``enrolled`` people with up to ``templates`` faces, probe with the rest of
    their faces (mated) and every face of ``strangers``."""
    chosen, mated = _choose_templates(faces.labels, enrolled, templates, rng)
    stranger_idx = np.nonzero(np.isin(faces.labels, strangers))[0]
    probes = np.concatenate([mated, stranger_idx])
    scores, ids = identity_scores(
        faces.embeddings[probes],
        faces.embeddings[chosen],
        faces.labels[chosen],
        aggregation,
    )
    best = np.argmax(scores, axis=1)
    top = scores[np.arange(len(probes)), best]
    m = len(mated)
    return GalleryRun(
        identities=len(enrolled),
        faces_per_identity=len(chosen) / max(1, len(enrolled)),
        mated_top=top[:m],
        mated_correct=ids[best[:m]] == faces.labels[mated],
        mated_quality=faces.quality[mated],
        stranger_top=top[m:],
        stranger_quality=faces.quality[stranger_idx],
    )


def open_set_protocol(
    faces: Faces,
    *,
    aggregation: Aggregation = "max",
    sizes: Sequence[int] = (10, 100, 1000),
    template_counts: Sequence[int] = (1, 3),
    targets: Sequence[float] = (0.001, 0.01, 0.1),
    quality_floor: float = 0.0,
    repeats: int = 5,
    calibration_share: float = 0.4,
    seed: int = 0,
) -> dict[str, Any]:
    """Achieved FPIR and FNIR of the calibrated threshold, averaged over ``repeats``
    random calibration/test splits of the people (see the module docstring)."""
    rng = np.random.default_rng(seed)
    people = np.unique(faces.labels)
    rows: dict[tuple[int, int, float], list[dict[str, float]]] = {}
    largest = 0
    # the test part must hold the largest requested gallery and a quarter as many strangers:
    # with fewer people than that needs, the calibration part gives up the difference
    n_cal = round(calibration_share * len(people))
    n_cal = max(min(n_cal, len(people) - math.ceil(max(sizes) / 0.75)), len(people) // 4)
    for r in range(repeats):
        perm = rng.permutation(people)
        cal_people, test_people = perm[:n_cal], perm[n_cal:]
        calibration = fit_calibration(
            faces.subset(np.isin(faces.labels, cal_people)), aggregation, seed=seed + r
        )
        # keep at least a quarter of the test people as strangers
        biggest = int(len(test_people) * 0.75)
        largest = biggest
        for n in [s for s in sizes if s < biggest] + [biggest]:
            for t in template_counts:
                order = rng.permutation(test_people)
                run = run_gallery(faces, order[:n], order[n:], t, aggregation, rng)
                for target in targets:
                    thr = threshold_for_fpir(calibration, target, n, run.faces_per_identity)
                    fpir, fnir = run.rates(thr, quality_floor)
                    key = (n if n != biggest else -1, t, target)
                    rows.setdefault(key, []).append(
                        {
                            "threshold": thr,
                            "fpir": fpir,
                            "fnir": fnir,
                            "identities": n,
                            "faces_per_identity": run.faces_per_identity,
                            "strangers": len(run.stranger_top),
                            "mated": len(run.mated_top),
                        }
                    )
    table = []
    for (n, t, target), runs in sorted(rows.items(), key=lambda kv: (kv[0][0] < 0, kv[0])):
        table.append(
            {
                "identities": int(np.mean([x["identities"] for x in runs])),
                "largest": n < 0,
                "templates": t,
                "faces_per_identity": float(np.mean([x["faces_per_identity"] for x in runs])),
                "target_fpir": target,
                "threshold": float(np.mean([x["threshold"] for x in runs])),
                "fpir": float(np.mean([x["fpir"] for x in runs])),
                "fnir": float(np.mean([x["fnir"] for x in runs])),
                "strangers": int(np.mean([x["strangers"] for x in runs])),
                "mated": int(np.mean([x["mated"] for x in runs])),
                "repeats": len(runs),
            }
        )
    return {
        "aggregation": aggregation,
        "quality_floor": quality_floor,
        "repeats": repeats,
        "calibration_share": calibration_share,
        "calibration_people": n_cal,
        "test_people": len(people) - n_cal,
        "largest_gallery": largest,
        "rows": table,
    }


def compare_aggregations(
    faces: Faces, identities: int, templates: int, fpir: float = 0.01, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Rank-1 and FNIR at ``fpir`` (oracle threshold on the strangers) per aggregation,
    on the same random galleries."""
    out: dict[str, dict[str, float]] = {}
    people = np.unique(faces.labels)
    for aggregation in AGGREGATIONS:
        rng = np.random.default_rng(seed)
        ranks, fnirs = [], []
        for _ in range(5):
            order = rng.permutation(people)
            run = run_gallery(
                faces, order[:identities], order[identities:], templates, aggregation, rng
            )
            thr = run.threshold_at_fpir(fpir)
            ranks.append(float(np.mean(run.mated_correct)))
            fnirs.append(run.rates(thr)[1])
        out[aggregation] = {"rank1": float(np.mean(ranks)), "fnir_at_fpir": float(np.mean(fnirs))}
    return out


def quality_floor_effect(
    faces: Faces,
    calibration_result: dict[str, Any],
    floors: Sequence[float],
    aggregation: Aggregation,
    identities: int,
    target: float = 0.01,
    seed: int = 0,
) -> list[dict[str, float]]:
    """FPIR and FNIR at the calibrated threshold for each probe quality floor (same
    galleries for every floor)."""
    del calibration_result
    rng = np.random.default_rng(seed)
    people = np.unique(faces.labels)
    perm = rng.permutation(people)
    n_cal = round(0.4 * len(perm))
    cal = fit_calibration(faces.subset(np.isin(faces.labels, perm[:n_cal])), aggregation)
    test = perm[n_cal:]
    n = min(identities, int(len(test) * 0.75))
    runs = []
    for _ in range(5):
        order = rng.permutation(test)
        runs.append(run_gallery(faces, order[:n], order[n:], 3, aggregation, rng))
    out = []
    for floor in floors:
        fp, fn, refused_m, refused_s = [], [], [], []
        for run in runs:
            thr = threshold_for_fpir(cal, target, n, run.faces_per_identity)
            a, b = run.rates(thr, floor)
            fp.append(a)
            fn.append(b)
            refused_m.append(float(np.mean(run.mated_quality < floor)))
            refused_s.append(float(np.mean(run.stranger_quality < floor)))
        out.append(
            {
                "floor": float(floor),
                "fpir": float(np.mean(fp)),
                "fnir": float(np.mean(fn)),
                "mated_refused": float(np.mean(refused_m)),
                "strangers_refused": float(np.mean(refused_s)),
                "identities": n,
            }
        )
    return out


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


# ----------------------------------------------------------------------- the command
def face_quality(crops: np.ndarray, landmarks: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
    """Quality of cached faces, by the service's own ``faces.quality.assess_quality``."""
    from faces.quality import assess_quality

    conf = scores if scores is not None else np.ones(len(crops), dtype=np.float32)
    return np.asarray(
        [
            assess_quality(c, lm, float(s)).score
            for c, lm, s in zip(crops, landmarks, conf, strict=True)
        ],
        dtype=np.float32,
    )


def embed_validation(
    identities: dict[str, Any], keys: list[str], embed: Any, cache_file: Path | None = None
) -> Faces:
    """Embeddings, labels and quality of every cached face of the validation people
    ``keys``; stored in ``cache_file`` and reused when it names the same people."""
    if cache_file is not None and cache_file.exists():
        with np.load(cache_file) as z:
            if list(z["keys"]) == keys:
                log.info("reusing embeddings from %s", cache_file)
                return Faces(z["embeddings"], z["labels"], z["quality"])
    embs, labels, quality = [], [], []
    for i, key in enumerate(keys):
        ident = identities[key]
        labels.append(np.full(len(ident.crops), i))
        landmarks = ident.landmarks
        if landmarks is None:
            raise ValueError(f"cache entry {key} has no landmarks: re-run prepare")
        quality.append(face_quality(ident.crops, landmarks, ident.scores))
    crops = np.concatenate([identities[k].crops for k in keys])
    log.info("embedding %d validation faces of %d people", len(crops), len(keys))
    embs = embed(crops)
    faces = Faces(
        np.asarray(embs, dtype=np.float32), np.concatenate(labels), np.concatenate(quality)
    )
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            cache_file,
            keys=np.asarray(keys),
            embeddings=faces.embeddings,
            labels=faces.labels,
            quality=faces.quality,
        )
    return faces


def histogram_gallery(faces: Faces, aggregation: Aggregation) -> GalleryRun:
    """The one large gallery whose best-score histograms are drawn: up to 1,000 people
    (60 % of them at most) enrolled with up to 3 faces, the rest strangers."""
    rng = np.random.default_rng(0)
    people = rng.permutation(np.unique(faces.labels))
    n = min(1000, int(len(people) * 0.6))
    return run_gallery(faces, people[:n], people[n:], 3, aggregation, rng)


def calibrate_model(
    faces: Faces,
    out_dir: Path,
    *,
    aggregation: Aggregation = "max",
    sizes: Sequence[int] = (10, 100, 1000),
    repeats: int = 5,
    quality_floor: float = 0.0,
    floors: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7),
    source: str = "",
) -> dict[str, Any]:
    """Everything the calibration evidence needs: the protocol table for the shipped
    aggregation (without and with the probe quality floor), the comparison of
    aggregations, the quality-floor table, plots, and the calibration fitted on *all*
    the validation people for the model card. Writes ``calibration.json`` + PNGs."""
    protocol = open_set_protocol(faces, aggregation=aggregation, sizes=sizes, repeats=repeats)
    gated = open_set_protocol(
        faces, aggregation=aggregation, sizes=sizes, repeats=repeats, quality_floor=quality_floor
    )
    largest = protocol["largest_gallery"]
    aggregations = {
        f"{t}_faces": compare_aggregations(faces, min(1000, largest), t) for t in (1, 3)
    }
    quality = quality_floor_effect(faces, protocol, floors, aggregation, min(1000, largest))
    calibration, tail_scores = fit_calibration_with_scores(faces, aggregation, source=source)
    result = {
        "protocol": protocol,
        "protocol_with_quality_floor": gated,
        "aggregations": aggregations,
        "quality_floors": quality,
        "calibration": calibration.model_dump(),
        "faces": len(faces.labels),
        "people": len(np.unique(faces.labels)),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = histogram_gallery(faces, aggregation)
    plot_data = PlotData(
        tail_scores=tail_scores,
        protocol_rows=protocol["rows"],
        histogram_gallery=shown.identities,
        histogram_mated=shown.mated_top[shown.mated_correct],
        histogram_strangers=shown.stranger_top,
    )
    result["plots"] = plot_calibration(plot_data, calibration, out_dir)
    write_json(out_dir / "calibration.json", result)
    return result
