"""Does the calibration check on the enrolled people tell a heavier population from a
matching one? (docs/MODEL.md, "Calibration check on the enrolled people".)

The open-set protocol of ``training.calibrate`` with the check added. The LFW validation
people (label errors corrected by ``training/data_fixes.json``) are split at random: 40 %
calibrate a "card" (``training.calibrate.fit_calibration``, the same tails the shipped card
carries, by identity centroid), the rest are the LFW test people. Then, per population, a
gallery of N people is enrolled with up to 3 photos each (the enrolment floor applied),
and the threshold the service would use for it comes from the LFW card:

* the **check** (``app.gallery.calibration_check.check``) sees only the gallery and says
  ``ok`` / ``heavier_than_card`` / ``too_few_identities`` with its estimate and interval;
* the **truth** is the existing protocol's achieved FPIR: every photo of the population's
  people *not* enrolled is a stranger probe against the gallery.

Populations: LFW test people (should stay quiet), CelebA validation people (whole-scene
photos of other celebrities), ORL (lab photos, greyscale), and LFW test people with a
synthetic heavier tail (every embedding pulled towards one common direction by ``λ``,
which raises every non-mated score, as a population more alike than the card's would).
Each row is ``--repeats`` random splits and galleries.

    python -m bench.population_embed        # once: embeds the validation people (cached)
    python -m bench.population_check        # ~1 min: bench/results/population_check.{json,md}
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.gallery.calibration_check import check, deployment_calibration, min_identities
from app.gallery.population import Population
from bench.common import RESULTS
from bench.population_embed import CACHE, load
from faces.model_contract import Calibration
from faces.open_set import threshold_for_fpir
from training.calibrate import (
    DATA_FIXES,
    Faces,
    _choose_templates,
    apply_data_fixes,
    fit_calibration,
    run_gallery,
)

ENROL_FLOOR, PROBE_FLOOR, TEMPLATES = 0.5, 0.2, 3
REPO = Path(__file__).resolve().parents[1]
PICTURE = REPO / "docs" / "img" / "population_check.png"


@dataclass(frozen=True)
class Condition:
    """One row: ``population`` people, galleries of ``identities``, target ``target``;
    ``pull``: the synthetic common-direction weight (0: the data as it is)."""

    population: str
    identities: int
    target: float
    pull: float = 0.0

    @property
    def label(self) -> str:
        extra = f", heavier tail λ={self.pull:g}" if self.pull else ""
        return f"{self.population}{extra}"


CONDITIONS = [
    Condition("lfw", 800, 0.01),
    Condition("lfw", 200, 0.05),
    Condition("lfw", 100, 0.01),
    Condition("celeba", 40, 0.05),
    Condition("orl", 30, 0.1),
    Condition("lfw", 800, 0.01, pull=0.15),
    Condition("lfw", 800, 0.01, pull=0.3),
    Condition("lfw", 200, 0.05, pull=0.3),
]


def dataset_faces(cache: Path) -> tuple[Faces, np.ndarray, list[str]]:
    """Every cached face of every dataset, label errors corrected: (faces, dataset of each
    face, identity key of each label)."""
    keys: list[str] = []
    index: dict[str, int] = {}
    parts = []
    for dataset in ("lfw", "celeba", "orl"):
        data = load(dataset, cache)
        labels = []
        for person in data["people"].tolist():
            key = f"{dataset}/{person}"
            if key not in index:
                index[key] = len(keys)
                keys.append(key)
            labels.append(index[key])
        parts.append((data, np.asarray(labels), dataset))
    faces = Faces(
        np.concatenate([p[0]["embeddings"] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[0]["quality"] for p in parts]),
    )
    files = np.concatenate([p[0]["paths"] for p in parts]).tolist()
    origin = np.concatenate([np.full(len(p[1]), p[2]) for p in parts])
    fixes = json.loads(DATA_FIXES.read_text())
    fixed, _ = apply_data_fixes(faces, keys, files, fixes)
    wrong = set(fixes.get("largest_face_is_someone_else", []))
    origin = origin[np.asarray([f not in wrong for f in files], dtype=bool)]
    return fixed, origin, keys


def pulled(faces: Faces, direction: np.ndarray, weight: float) -> Faces:
    """Every embedding moved towards ``direction`` by ``weight`` and renormalised."""
    if not weight:
        return faces
    moved = faces.embeddings + weight * direction[None, :]
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    return Faces(moved.astype(np.float32), faces.labels, faces.quality)


def one_gallery(
    faces: Faces, people: np.ndarray, condition: Condition, card: Calibration, seed: int
) -> dict[str, Any]:
    """Enrol ``condition.identities`` of ``people``; the check on the gallery, and the
    achieved FPIR on every photo of the others."""
    rng = np.random.default_rng(seed)
    usable = faces.subset(faces.quality >= PROBE_FLOOR)
    order = rng.permutation(people)
    enrolled, strangers = order[: condition.identities], order[condition.identities :]
    # enrolment: up to TEMPLATES faces that pass the enrolment floor
    enrollable = usable.subset((usable.quality >= ENROL_FLOOR) | ~np.isin(usable.labels, enrolled))
    # run_gallery draws the templates first, so the same seed gives the same gallery here
    run = run_gallery(
        enrollable, enrolled, strangers, TEMPLATES, "centroid", np.random.default_rng(seed + 1)
    )
    chosen, _ = _choose_templates(
        enrollable.labels, enrolled, TEMPLATES, np.random.default_rng(seed + 1)
    )
    gallery = Population.of(
        [str(i) for i in chosen],
        [str(label) for label in enrollable.labels[chosen]],
        enrollable.embeddings[chosen],
    )
    threshold = threshold_for_fpir(
        card, condition.target, gallery.identities, gallery.faces / gallery.identities
    )
    achieved = float(np.mean(run.stranger_top >= threshold))
    # the same, each stranger weighted once (as the check weights them), not each photo
    stranger_labels = enrollable.labels[np.isin(enrollable.labels, strangers)]
    named = np.bincount(
        np.unique(stranger_labels, return_inverse=True)[1],
        weights=run.stranger_top >= threshold,
    )
    per_person = float(np.mean(named / np.unique(stranger_labels, return_counts=True)[1]))
    found = check(gallery, threshold, condition.target, "centroid")
    # FACEID_CALIBRATION=deployment: the tail fitted on the gallery itself (or the card's)
    own = deployment_calibration(gallery, "centroid", condition.target, "experiment")
    own_threshold = threshold
    if own is not None:
        own_threshold = threshold_for_fpir(
            own, condition.target, gallery.identities, gallery.faces / gallery.identities
        )
    return {
        "deployment_fitted": own is not None,
        "deployment_threshold": own_threshold,
        "deployment_fpir": float(np.mean(run.stranger_top >= own_threshold)),
        "threshold": threshold,
        "achieved_fpir": achieved,
        "achieved_fpir_per_person": per_person,
        "strangers": len(run.stranger_top),
        "status": found.status,
        "fpir": found.fpir,
        "fpir_low": found.fpir_low,
        "fpir_high": found.fpir_high,
    }


def _mean(runs: list[dict[str, Any]], field: str) -> float | None:
    values = [x[field] for x in runs if x[field] is not None]
    return float(np.mean(values)) if values else None


def run(
    cache: Path, repeats: int, seed: int, conditions: list[Condition] = CONDITIONS
) -> dict[str, Any]:
    faces, origin, _ = dataset_faces(cache)
    lfw_people = np.unique(faces.labels[origin == "lfw"])
    direction = faces.embeddings[origin == "lfw"].mean(axis=0)
    direction /= np.linalg.norm(direction)
    rows: dict[Condition, list[dict[str, Any]]] = {c: [] for c in conditions}
    histograms: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    for r in range(repeats):
        perm = rng.permutation(lfw_people)
        n_cal = round(0.4 * len(perm))
        cal_people, test_lfw = perm[:n_cal], perm[n_cal:]
        card = fit_calibration(
            faces.subset(np.isin(faces.labels, cal_people)), "centroid", seed=seed + r
        )
        for condition in conditions:
            if condition.population == "lfw":
                people = test_lfw
            else:
                people = np.unique(faces.labels[origin == condition.population])
            population = pulled(
                faces.subset(np.isin(faces.labels, people)), direction, condition.pull
            )
            rows[condition].append(
                one_gallery(population, people, condition, card, seed * 1000 + r)
            )
        if r == 0:
            histograms = score_histograms(faces, origin, cal_people, test_lfw, direction)
    table = []
    for condition, runs in rows.items():
        est = [x["fpir"] for x in runs if x["fpir"] is not None]
        table.append(
            {
                "population": condition.label,
                "identities": condition.identities,
                "target_fpir": condition.target,
                "min_identities": min_identities(condition.target),
                "achieved_fpir": float(np.mean([x["achieved_fpir"] for x in runs])),
                "achieved_fpir_per_person": float(
                    np.mean([x["achieved_fpir_per_person"] for x in runs])
                ),
                "estimate": float(np.mean(est)) if est else None,
                "interval_low": _mean(runs, "fpir_low"),
                "interval_high": _mean(runs, "fpir_high"),
                "threshold": float(np.mean([x["threshold"] for x in runs])),
                "deployment_fitted": float(np.mean([x["deployment_fitted"] for x in runs])),
                "deployment_threshold": float(np.mean([x["deployment_threshold"] for x in runs])),
                "deployment_fpir": float(np.mean([x["deployment_fpir"] for x in runs])),
                "heavier": float(np.mean([x["status"] == "heavier_than_card" for x in runs])),
                "ok": float(np.mean([x["status"] == "ok" for x in runs])),
                "too_few": float(np.mean([x["status"] == "too_few_identities" for x in runs])),
                "strangers": int(np.mean([x["strangers"] for x in runs])),
                "repeats": len(runs),
            }
        )
    return {"repeats": repeats, "seed": seed, "rows": table, "histograms": histograms}


def score_histograms(
    faces: Faces,
    origin: np.ndarray,
    cal_people: np.ndarray,
    test_lfw: np.ndarray,
    direction: np.ndarray,
) -> dict[str, np.ndarray]:
    """Non-mated identity scores (every face against every other identity's centroid)
    of each population, for the picture."""
    from app.gallery.population import identity_scores

    groups = {
        "LFW (card people)": faces.subset(np.isin(faces.labels, cal_people)),
        "LFW test people": faces.subset(np.isin(faces.labels, test_lfw)),
        "CelebA": faces.subset(origin == "celeba"),
        "ORL": faces.subset(origin == "orl"),
        "LFW test, λ=0.3": pulled(faces.subset(np.isin(faces.labels, test_lfw)), direction, 0.3),
    }
    out = {}
    for name, group in groups.items():
        population = Population.of(
            [str(i) for i in range(len(group.labels))],
            [str(x) for x in group.labels],
            group.embeddings,
        )
        scores = np.concatenate(
            [b.scores[np.isfinite(b.scores)] for b in identity_scores(population, "centroid")]
        )
        out[name] = scores
    return out


def picture(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    bins = np.linspace(-0.4, 1.0, 141)
    for name, scores in result["histograms"].items():
        left.hist(scores, bins=bins, density=True, histtype="step", label=name, log=True)
    left.set_xlabel("non-mated identity score (face vs another identity's centroid)")
    left.set_ylabel("density (log)")
    left.set_title("Impostor tails of each population")
    left.legend(fontsize=8)
    rows = result["rows"]
    y = np.arange(len(rows))[::-1]
    for yi, row in zip(y, rows, strict=True):
        right.plot([row["target_fpir"]] * 2, [yi - 0.4, yi + 0.4], color="black", lw=1)
        right.plot([2 * row["target_fpir"]] * 2, [yi - 0.4, yi + 0.4], color="grey", ls=":", lw=1)
        if row["estimate"] is not None:
            right.plot([row["interval_low"], row["interval_high"]], [yi, yi], color="C0", lw=3)
            right.plot(row["estimate"], yi, "o", color="C0")
        right.plot(row["achieved_fpir_per_person"], yi, "x", color="C3", ms=9)
    right.set_yticks(y)
    right.set_yticklabels(
        [f"{r['population']}, N={r['identities']}, α={r['target_fpir']:g}" for r in rows],
        fontsize=8,
    )
    right.set_xscale("log")
    right.set_xlabel("FPIR (log): estimate ● with mean 95 % interval; achieved ✕, per person")
    right.set_title("Check vs target (|) and 2× target (┆)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def markdown(result: dict[str, Any]) -> str:
    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.2f} %"

    header = [
        "population",
        "N enrolled",
        "target",
        "achieved FPIR: per photo (per person)",
        "check estimate (mean 95 % interval)",
        "heavier_than_card",
        "ok",
        "too_few_identities",
        "threshold: card → deployment (share fitted)",
        "achieved FPIR, FACEID_CALIBRATION=deployment",
    ]
    body = [
        [
            r["population"],
            str(r["identities"]),
            pct(r["target_fpir"]),
            f"{pct(r['achieved_fpir'])} ({pct(r['achieved_fpir_per_person'])})",
            f"{pct(r['estimate'])} ({pct(r['interval_low'])}–{pct(r['interval_high'])})",
            f"{100 * r['heavier']:.0f} %",
            f"{100 * r['ok']:.0f} %",
            f"{100 * r['too_few']:.0f} %",
            f"{r['threshold']:.3f} → {r['deployment_threshold']:.3f} "
            f"({100 * r['deployment_fitted']:.0f} %)",
            pct(r["deployment_fpir"]),
        ]
        for r in result["rows"]
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "population_check")
    args = parser.parse_args(argv)
    result = run(args.cache, args.repeats, args.seed)
    picture(result, PICTURE)
    histograms = result.pop("histograms")
    result["non_mated_scores"] = {
        name: {
            "count": len(s),
            "p99": float(np.quantile(s, 0.99)),
            "p99.9": float(np.quantile(s, 0.999)),
            "max": float(s.max()),
        }
        for name, s in histograms.items()
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    args.out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(json.dumps(result["non_mated_scores"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
