"""Does a quality refusal pay? Open-set identification with and without each rule.

A new user enrols one photo per person and identifies later photos. Refusing an enrolment
photo keeps that person out of the gallery (every later probe of them is then a miss, or
worse, named as someone else); accepting a useless one can make their probes miss and
strangers match it. This measures both sides on held-out people (LFW people named in
``pairsDevTrain.txt``: the validation split of ``training/data.py``, never trained on):

- ``extract`` (slow, resumable, cached in ``~/.cache/faceid/quality_floor`` or
  ``$FACEID_QUALITY_CACHE``): every selected photo as it is and in seven degraded variants
  (``VARIANTS``: re-compressed as JPEG at quality 30 and 10, downscaled to 50 % and 40 %,
  Gaussian-blurred with sigma 1.5, 3 and 5 px, each then saved as an upload would be),
  through the service's ``FacePipeline`` and its CPU engine (``tflite-int8``): the
  quality measurements, the blur effect (``faces.quality.blur_effect``), and the
  embeddings of the crop, its mirror image and a slightly blurred copy.
- ``report``: for each rule (refuse under the floor on one measurement, all four, …),
  galleries of single-photo enrolments, probes of enrolled people (mated) and of people
  never enrolled (strangers); the threshold is the service's, calibrated from the model
  card for the accepted gallery's size at ``--target-fpir``. FNIR counts every mated probe
  not named as its person (its person refused, under the threshold, named wrongly,
  refused at the probe floor); FPIR the strangers named as someone.

    python -m bench.quality_floor extract --people 500 --strangers 800
    python -m bench.quality_floor report

Writes ``bench/results/quality_floor.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from faces.model_contract import ModelCard

from bench.common import DEFAULT_DATA, REPO, RESULTS

CACHE = Path(os.environ.get("FACEID_QUALITY_CACHE", "~/.cache/faceid/quality_floor")).expanduser()
MODEL_DIR = REPO / "model_store" / "faceid" / "2"
MEASURES = ("size", "laplacian", "pose", "confidence", "blur_effect")
# The sharpness ramp shipped before this measurement: variance of the Laplacian, 8 → 60.
LAPLACIAN_RAMP = (8.0, 60.0)


def laplacian_variance(crop: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of an RGB crop's grey levels (the former
    ``sharpness`` measurement of ``faces.quality``, kept here for the comparison)."""
    grey = np.asarray(crop, dtype=np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    return float(lap.var())


# name → what is done to the 250×250 photo before it is uploaded
VARIANTS: dict[str, str] = {
    "original": "as LFW ships it (JPEG, 250×250)",
    "jpeg30": "re-compressed, JPEG quality 30",
    "jpeg10": "re-compressed, JPEG quality 10",
    "down50": "downscaled to 125×125 (JPEG quality 75)",
    "down40": "downscaled to 100×100 (JPEG quality 75)",
    "blur1.5": "Gaussian blur, sigma 1.5 px (JPEG quality 90)",
    "blur3": "Gaussian blur, sigma 3 px (JPEG quality 90)",
    "blur5": "Gaussian blur, sigma 5 px (JPEG quality 90): a face nobody would call usable",
}
KEYS = ("files", "variant", "found", "measures", "emb", "emb_flip", "emb_blur")


def degrade(data: bytes, variant: str) -> bytes:
    """The photo's bytes after ``variant`` (see ``VARIANTS``)."""
    from PIL import Image, ImageFilter

    if variant == "original":
        return data
    img = Image.open(io.BytesIO(data)).convert("RGB")
    quality = 90
    if variant.startswith("jpeg"):
        quality = int(variant[4:])
    elif variant.startswith("down"):
        side = round(img.width * int(variant[4:]) / 100)
        img = img.resize((side, round(img.height * side / img.width)), Image.Resampling.BILINEAR)
        quality = 75
    elif variant.startswith("blur"):
        img = img.filter(ImageFilter.GaussianBlur(float(variant[4:])))
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


# --------------------------------------------------------------------------- people
def select_people(lfw: Path, people: int, strangers: int, seed: int) -> dict[str, list[str]]:
    """``people`` validation people with ≥ 2 photos (enrolled: photo 1 enrols, up to 3
    more probe) and ``strangers`` others (their first photo probes), drawn with ``seed``."""
    names: set[str] = set()
    lines = (lfw / "pairsDevTrain.txt").read_text().splitlines()[1:]
    for line in lines:
        parts = line.split("\t")
        names.update([parts[0]] if len(parts) == 3 else [parts[0], parts[2]])
    photos = {n: sorted(p.name for p in (lfw / "train" / n).glob("*.jpg")) for n in sorted(names)}
    several = [n for n in photos if len(photos[n]) >= 2]
    rng = random.Random(seed)
    rng.shuffle(several)
    enrolled = several[:people]
    others = [n for n in photos if n not in set(enrolled)]
    rng.shuffle(others)
    chosen = {n: photos[n][:4] for n in enrolled}
    chosen.update({n: photos[n][:1] for n in others[:strangers]})
    return {"enrolled": enrolled, "strangers": others[:strangers], "photos": chosen}  # type: ignore[dict-item]


# --------------------------------------------------------------------------- extract
def extract(args: argparse.Namespace) -> int:
    """Measure and embed every selected photo in every variant (one npz per person)."""
    from PIL import Image, ImageFilter

    from app.inference.model import EmbeddingModel
    from faces import FacePipeline, ImageError
    from faces.quality import blur_effect

    lfw = Path(args.data)
    selection = select_people(lfw, args.people, args.strangers, args.seed)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "selection.json").write_text(json.dumps(selection, indent=1))
    pipeline = FacePipeline()
    model = EmbeddingModel(MODEL_DIR, engine="tflite-int8", threads=1)
    photos: dict[str, list[str]] = selection["photos"]  # type: ignore[assignment]
    todo = [n for n in photos if _missing(CACHE / f"{n}.npz")]
    print(f"{len(photos) - len(todo)} people cached, {len(todo)} to do", flush=True)
    started = time.time()
    for i, name in enumerate(todo):
        rows: dict[str, list[Any]] = {k: [] for k in ("file", "variant", "found", "measures")}
        crops, flips, blurs = [], [], []
        missing = _missing(CACHE / f"{name}.npz")
        for file in photos[name]:
            data = (lfw / "train" / name / file).read_bytes()
            for variant in missing:
                try:
                    faces = pipeline.faces_in_bytes(degrade(data, variant), max_faces=1)
                except ImageError:
                    faces = []
                rows["file"].append(file)
                rows["variant"].append(variant)
                rows["found"].append(bool(faces))
                if not faces:
                    rows["measures"].append([np.nan] * len(MEASURES))
                    crop = np.zeros((112, 112, 3), np.uint8)
                else:
                    q = faces[0].quality.measurements
                    crop = faces[0].crop
                    rows["measures"].append(
                        [
                            q["size"],
                            laplacian_variance(crop),
                            q["pose"],
                            q["confidence"],
                            blur_effect(crop),
                        ]
                    )
                crops.append(crop)
                flips.append(crop[:, ::-1])
                blurs.append(
                    np.asarray(Image.fromarray(crop).filter(ImageFilter.GaussianBlur(1.0)))
                )
        emb = model.embed(np.stack(crops + flips + blurs))
        n = len(crops)
        new = {
            "files": np.array(rows["file"]),
            "variant": np.array(rows["variant"]),
            "found": np.array(rows["found"]),
            "measures": np.array(rows["measures"], np.float32),
            "emb": emb[:n].astype(np.float32),
            "emb_flip": emb[n : 2 * n].astype(np.float32),
            "emb_blur": emb[2 * n :].astype(np.float32),
        }
        if (CACHE / f"{name}.npz").is_file():  # variants added since: append
            old = np.load(CACHE / f"{name}.npz")
            new = {k: np.concatenate([old[k], new[k]]) for k in KEYS}
        np.savez(CACHE / f"{name}.tmp.npz", **new)  # type: ignore[arg-type]
        os.replace(CACHE / f"{name}.tmp.npz", CACHE / f"{name}.npz")
        if (i + 1) % 20 == 0 or i + 1 == len(todo):
            rate = (time.time() - started) / (i + 1)
            print(f"{i + 1}/{len(todo)} people, {rate:.1f} s each", flush=True)
    return 0


def _missing(path: Path) -> list[str]:
    """The variants not yet in a person's cache file."""
    if not path.is_file():
        return list(VARIANTS)
    done = set(np.load(path)["variant"].tolist())
    return [v for v in VARIANTS if v not in done]


# --------------------------------------------------------------------------- report
class Photos:
    """Every cached (photo, variant): person, measurements, embeddings."""

    def __init__(self, cache: Path) -> None:
        selection = json.loads((cache / "selection.json").read_text())
        # only people already extracted (a report can run while ``extract`` continues)
        done = {p.stem for p in cache.glob("*.npz") if not p.stem.endswith(".tmp")}
        self.enrolled: list[str] = [n for n in selection["enrolled"] if n in done]
        self.strangers: list[str] = [n for n in selection["strangers"] if n in done]
        cols: dict[str, list[Any]] = {}
        for name in self.enrolled + self.strangers:
            z = np.load(cache / f"{name}.npz")
            n = len(z["files"])
            for key in KEYS:
                cols.setdefault("file" if key == "files" else key, []).append(z[key])
            cols.setdefault("person", []).append(np.array([name] * n))
        self.person = np.concatenate(cols["person"])
        self.file = np.concatenate(cols["file"])
        self.variant = np.concatenate(cols["variant"])
        self.found = np.concatenate(cols["found"])
        m = np.concatenate(cols["measures"])
        self.emb = np.concatenate(cols["emb"])
        flip = np.concatenate(cols["emb_flip"])
        blur = np.concatenate(cols["emb_blur"])
        self.measures = {k: m[:, i] for i, k in enumerate(MEASURES)}
        self.measures["flip_agreement"] = np.sum(self.emb * flip, axis=1)
        self.measures["blur_agreement"] = np.sum(self.emb * blur, axis=1)

        first_file: dict[str, str] = {}
        for p, f in zip(self.person, self.file, strict=True):
            first_file[p] = min(f, first_file.get(p, f))
        self._index: dict[tuple[str, str, bool], list[int]] = {}
        for i, (p, f, v) in enumerate(zip(self.person, self.file, self.variant, strict=True)):
            self._index.setdefault((p, v, first_file[p] == f), []).append(i)

    def rows(self, people: list[str], variant: str, first: bool) -> np.ndarray:
        """Indices of each person's first photo (``first``) or other photos, in ``variant``."""
        out = [i for p in people for i in self._index.get((p, variant, first), [])]
        return np.array(out, dtype=int)


# A rule: (parts of the quality that can refuse, floor). Part values are the ramps of
# ``faces.quality`` applied to the measurements; ``None`` = no refusal.
Rule = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]


def quality_parts(measures: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The ramped parts of ``faces.quality`` for ``rows`` (NaN where no face), and
    ``laplacian``: the sharpness part as it was shipped before (variance of the Laplacian)."""
    from faces.quality import QUALITY_RAMPS

    values = {
        "size": measures["size"][rows],
        "sharpness": 1.0 - measures["blur_effect"][rows],
        "pose": measures["pose"][rows],
        "confidence": measures["confidence"][rows],
        "laplacian": measures["laplacian"][rows],
    }
    ramps = {**QUALITY_RAMPS, "laplacian": LAPLACIAN_RAMP}
    return {
        k: np.clip((v - ramps[k][0]) / (ramps[k][1] - ramps[k][0]), 0.0, 1.0)
        for k, v in values.items()
    }


def passes(photos: Photos, rows: np.ndarray, parts: tuple[str, ...], floor: float) -> np.ndarray:
    """Which ``rows`` a rule refusing under ``floor`` on ``parts`` accepts."""
    ok = photos.found[rows].copy()
    if not parts:
        return ok
    q = quality_parts(photos.measures, rows)
    for part in parts:
        ok &= np.nan_to_num(q[part], nan=0.0) >= floor
    return ok


def identify(
    photos: Photos,
    gallery_rows: np.ndarray,
    probe_rows: np.ndarray,
    probe_ok: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(named person or '' per probe, top-1 person or '' per probe)."""
    if len(gallery_rows) == 0:
        empty = np.array([""] * len(probe_rows), dtype=object)
        return empty, empty
    scores = photos.emb[probe_rows] @ photos.emb[gallery_rows].T
    best = scores.argmax(axis=1)
    top = photos.person[gallery_rows][best].astype(object)
    top[~photos.found[probe_rows]] = ""
    named = top.copy()
    named[(scores.max(axis=1) < threshold) | ~probe_ok] = ""
    return named, top


@functools.cache
def _card() -> ModelCard:
    from faces.model_contract import read_card

    return read_card(MODEL_DIR)


def scenario(
    photos: Photos,
    enrol_variants: np.ndarray,
    probe_variants: np.ndarray,
    stranger_variants: np.ndarray,
    enrol_rule: tuple[tuple[str, ...], float],
    probe_rule: tuple[tuple[str, ...], float],
    target_fpir: float,
) -> dict[str, Any]:
    """One gallery: each enrolled person's first photo in ``enrol_variants[i]``; their
    other photos and the strangers' in the given variants; the rules applied."""
    from faces.open_set import threshold_for_fpir

    card = _card()
    assert card.calibration is not None
    enrol = np.array(
        [photos.rows([p], v, True)[0] for p, v in zip(photos.enrolled, enrol_variants, strict=True)]
    )
    accepted = passes(photos, enrol, *enrol_rule)
    gallery = enrol[accepted]
    n = max(1, len(gallery))
    threshold = threshold_for_fpir(card.calibration, target_fpir, n, 1.0)

    def probe_rows(people: list[str], variants: np.ndarray, first: bool) -> np.ndarray:
        picked = [photos.rows([p], v, first) for p, v in zip(people, variants, strict=True)]
        return np.concatenate(picked) if picked else np.array([], int)

    mated = probe_rows(photos.enrolled, probe_variants, False)
    strangers = probe_rows(photos.strangers, stranger_variants, True)
    result: dict[str, Any] = {
        "enrolments": len(enrol),
        "refused": int((photos.found[enrol] & ~accepted).sum()),
        "no_face": int((~photos.found[enrol]).sum()),
        "threshold": round(threshold, 4),
    }
    named, top = identify(photos, gallery, mated, passes(photos, mated, *probe_rule), threshold)
    truth = photos.person[mated]
    result["mated_probes"] = len(mated)
    result["fnir"] = float(np.mean(named != truth))
    result["misnamed"] = float(np.mean((named != "") & (named != truth)))
    result["rank1"] = float(np.mean(top == truth))
    result["probes_refused"] = float(
        np.mean(~passes(photos, mated, *probe_rule) & photos.found[mated])
    )
    s_named, _ = identify(
        photos, gallery, strangers, passes(photos, strangers, *probe_rule), threshold
    )
    result["strangers"] = len(strangers)
    result["fpir"] = float(np.mean(s_named != ""))
    # wrong answers a user sees: a person named as someone else, a stranger named
    result["wrong_answers"] = int(((named != "") & (named != truth)).sum() + (s_named != "").sum())
    result["missed"] = int((named == "").sum())
    return result


BEFORE = ("size", "laplacian", "pose", "confidence")
NOW = ("size", "sharpness", "pose", "confidence")


def rules(floor: float) -> dict[str, tuple[tuple[str, ...], float]]:
    """Every rule compared at one floor: none, each part alone, all four before and now."""
    return {
        "none (accept every face found)": ((), 0.0),
        "all four, Laplacian sharpness (shipped before)": (BEFORE, floor),
        "size only": (("size",), floor),
        "Laplacian sharpness only": (("laplacian",), floor),
        "blur-effect sharpness only": (("sharpness",), floor),
        "pose only": (("pose",), floor),
        "confidence only": (("confidence",), floor),
        "all four, blur-effect sharpness": (NOW, floor),
    }


ENROL_RULES = {
    **rules(0.5),
    "all four, blur-effect sharpness, floor 0.2": (NOW, 0.2),
    "all four, blur-effect sharpness, floor 0.05": (NOW, 0.05),
}
PROBE_RULES = {**rules(0.2), "all four, blur-effect sharpness, floor 0.05": (NOW, 0.05)}


def predictors(photos: Photos) -> dict[str, Any]:
    """How well each measurement of an enrolment photo predicts that its person's later
    (original) photos are not recognised: AUC over enrolment photos in every variant, with
    failure = fewer than half of the mated probes scoring above 0.5 against it."""
    out: dict[str, Any] = {}
    firsts, scores = [], []
    for p in photos.enrolled:
        probes = photos.rows([p], "original", False)
        for v in VARIANTS:
            row = photos.rows([p], v, True)
            if len(row) == 0 or not photos.found[row[0]] or len(probes) == 0:
                continue
            ok = photos.found[probes]
            if not ok.any():
                continue
            s = photos.emb[probes[ok]] @ photos.emb[row[0]]
            firsts.append(row[0])
            scores.append(float(np.mean(s >= 0.5)))
    idx = np.array(firsts)
    fail = np.array(scores) < 0.5
    out["enrolment_photos"] = len(idx)
    out["failures"] = int(fail.sum())
    higher_is_better = {
        "size": True,
        "laplacian": True,
        "pose": False,
        "confidence": True,
        "blur_effect": False,
        "flip_agreement": True,
        "blur_agreement": False,
    }
    auc = {}
    for k, better in higher_is_better.items():
        v = photos.measures[k][idx]
        v = -v if better else v  # larger = more likely to fail
        auc[k] = round(_auc(v[fail], v[~fail]), 4)
    out["auc_predicting_failure"] = auc
    per_variant = {}
    for v in VARIANTS:
        sel = photos.variant[idx] == v
        per_variant[v] = {
            "photos": int(sel.sum()),
            "failure_rate": float(fail[sel].mean()) if sel.any() else None,
            **{
                f"median_{k}": float(np.median(photos.measures[k][idx][sel])) if sel.any() else None
                for k in higher_is_better
            },
        }
    out["per_variant"] = per_variant
    out["_idx"] = idx
    out["_fail"] = fail
    return out


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a positive scores higher than a negative), ties half."""
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    for value in np.unique(allv):  # average ranks of ties
        same = allv == value
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def report(args: argparse.Namespace) -> int:
    """Tables of every rule in three conditions, and the predictors; JSON + md + png."""
    photos = Photos(CACHE)
    rng = np.random.default_rng(args.seed)
    n_e, n_s = len(photos.enrolled), len(photos.strangers)
    names = list(VARIANTS)
    original_e = np.array(["original"] * n_e)
    original_s = np.array(["original"] * n_s)
    # (enrolment variants, mated probe variants, stranger variants, stages measured)
    both = ("enrolment floor", "probe floor")
    conditions: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]] = {
        "every photo as LFW ships it (the report's condition)": (
            original_e,
            original_e,
            original_s,
            both,
        ),
        "enrolment photos degraded (each person one variant at random)": (
            rng.choice(names, n_e),
            original_e,
            original_s,
            both,
        ),
        "probes degraded (each probe person one variant at random)": (
            original_e,
            rng.choice(names, n_e),
            rng.choice(names, n_s),
            both,
        ),
    }
    for v in names[1:]:
        conditions[f"every enrolment photo {v}"] = (
            np.array([v] * n_e),
            original_e,
            original_s,
            ("enrolment floor",),
        )
    result: dict[str, Any] = {
        "people": n_e,
        "strangers": n_s,
        "target_fpir": args.target_fpir,
        "variants": VARIANTS,
        "conditions": {},
    }
    for cond, (ev, pv, sv, stages) in conditions.items():
        rows: dict[str, Any] = {stage: {} for stage in stages}
        if "enrolment floor" in stages:
            for name, rule in ENROL_RULES.items():
                rows["enrolment floor"][name] = scenario(
                    photos, ev, pv, sv, rule, ((), 0.0), args.target_fpir
                )
        if "probe floor" in stages:
            for name, rule in PROBE_RULES.items():
                rows["probe floor"][name] = scenario(
                    photos, ev, pv, sv, ((), 0.0), rule, args.target_fpir
                )
        result["conditions"][cond] = rows
    pred = predictors(photos)
    idx, fail = pred.pop("_idx"), pred.pop("_fail")
    result["predictors"] = pred
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "quality_floor.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "quality_floor.md").write_text(markdown(result))
    _plot(photos, idx, fail, RESULTS / "quality_floor.png")
    print(markdown(result))
    return 0


def markdown(result: dict[str, Any]) -> str:
    """The tables of ``report`` as Markdown."""
    lines = [
        f"{result['people']} enrolled people (one photo each), {result['strangers']} strangers; "
        f"target FPIR {result['target_fpir']:.0%}.",
        "",
    ]
    for cond, stages in result["conditions"].items():
        lines.append(f"**{cond}**")
        lines.append("")
        lines.append(
            "| floor | rule | enrolments refused | probes refused | threshold | rank-1 | FNIR "
            "| named wrongly | FPIR | wrong answers |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for stage, rules in stages.items():
            for name, r in rules.items():
                lines.append(
                    f"| {stage} | {name} | {r['refused']}/{r['enrolments']} "
                    f"| {r['probes_refused']:.1%} | {r['threshold']:.3f} | {r['rank1']:.1%} "
                    f"| {r['fnir']:.1%} | {r['misnamed']:.2%} | {r['fpir']:.2%} "
                    f"| {r['wrong_answers']} |"
                )
        lines.append("")
    pred = result["predictors"]
    lines.append(
        f"Predicting that an enrolment photo fails its person ({pred['failures']} of "
        f"{pred['enrolment_photos']} enrolment photos, all variants): AUC "
        + ", ".join(f"{k} {v:.3f}" for k, v in pred["auc_predicting_failure"].items())
    )
    lines.append("")
    lines.append(
        "| variant | photos with a face | failure rate | median Laplacian variance "
        "| median blur effect | median inter-ocular px | median flip agreement |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for v, d in pred["per_variant"].items():
        lines.append(
            f"| {v} | {d['photos']} | {d['failure_rate']:.1%} | {d['median_laplacian']:.1f} "
            f"| {d['median_blur_effect']:.3f} | {d['median_size']:.1f} "
            f"| {d['median_flip_agreement']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _plot(photos: Photos, idx: np.ndarray, fail: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (k, log) in zip(
        axes, [("laplacian", True), ("blur_effect", False), ("size", False)], strict=True
    ):
        v = photos.measures[k][idx]
        lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
        bins = np.geomspace(max(lo, 1e-3), hi, 41) if log else np.linspace(lo, hi, 41)
        for bad, colour, label in ((False, "tab:blue", "recognised"), (True, "tab:red", "fails")):
            ax.hist(v[fail == bad], bins=bins, alpha=0.6, color=colour, label=label)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(k)
        ax.legend()
    fig.suptitle("Enrolment photos (all variants): does the measurement predict failure?")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality_floor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="measure and embed the photos (resumable)")
    ex.add_argument("--data", default=str(DEFAULT_DATA / "lfw"))
    ex.add_argument("--people", type=int, default=500)
    ex.add_argument("--strangers", type=int, default=800)
    ex.add_argument("--seed", type=int, default=0)
    rp = sub.add_parser("report", help="the tables, from the cache")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--target-fpir", type=float, default=0.01)
    args = parser.parse_args(argv)
    return extract(args) if args.command == "extract" else report(args)


if __name__ == "__main__":
    sys.exit(main())
