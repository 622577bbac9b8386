"""Accuracy: our service (through its HTTP API) vs face_recognition 1.3, on the same images.

Protocols
- Verification: LFW ``pairsDevTrain.txt`` (1,100 genuine + 1,100 impostor pairs). 10-fold
  accuracy as in LFW's protocol (fold k = genuine pairs k·110…k·110+109 plus the same
  slice of impostor pairs; threshold chosen on the other 9 folds), ROC AUC, TAR at FAR
  1e-2 and 1e-3, and accuracy at each system's own shipped threshold (ours: the model
  card's cosine threshold from ``/health``; face_recognition: distance 0.6, its default
  ``tolerance``). With ``--split`` only pairs whose people are all in the validation split
  count as "never seen" and are reported separately.
- Open-set identification: enrolled people = LFW people that appear in a genuine pair of
  ``pairsDevTrain.txt`` (so they have ≥2 images); gallery = their first image, probes =
  their next images (at most ``--probes-per-person``); impostors = LFW people with exactly
  one image (never enrolled). Rank-1, FNIR at FPIR 1% (threshold set on the impostors'
  best scores), and FNIR/FPIR at the shipped threshold. With ``--split`` both sets are
  restricted to validation people.

How each system is called
- Ours: ``POST /embed`` once per distinct image (4 requests in flight), the largest face's
  embedding kept; every pair/probe is then scored offline with cosine similarity. This is
  the same model, pipeline and largest-face rule as ``/verify`` and ``/identify``, and much
  cheaper than one ``/verify`` call per pair.
- face_recognition: ``load_image_file`` → ``face_locations`` (HOG, upsample 1) → largest
  face → ``face_encodings`` (1 jitter, 5-point landmarks): its defaults. Score = −distance.

Failures are not skipped. An image where a system finds no face makes every pair that uses
it count as wrong in the accuracies (genuine pairs get score −∞, impostor pairs +∞); in the
ROC, AUC and TAR@FAR such a pair is never accepted (it lowers TAR; it cannot be a false
accept, otherwise a handful of failures would use up a 1e-3 FAR budget); a probe without a face
is a miss, an enrolled person whose gallery image has no face cannot be found; an impostor
probe without a face is counted as rejected (nothing to match — what /identify returns).
Counts are reported.

    python -m bench.accuracy                    # full (≈ 4,000 images per system)
    python -m bench.accuracy --quick            # 24+24 pairs, 8 enrolled, 8 impostors
    python -m bench.accuracy --quick --no-peer  # without the face_recognition venv
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    DEFAULT_DATA,
    REPO,
    RESULTS,
    Service,
    largest_face,
    live_service,
    load_split,
    machine_info,
    machine_line,
    md_table,
    people_images,
    read_pairs,
    spread,
    write_results,
)

PEER_THRESHOLD_DISTANCE = 0.6
TARGET_VERIFICATION = 0.994


# --------------------------------------------------------------------------- embedding
def embed_service(service: Service, paths: list[Path], concurrency: int = 4) -> dict[str, Any]:
    """Largest-face embedding per image through ``POST /embed`` (NaN row: no face)."""
    import httpx

    embs: list[np.ndarray | None] = [None] * len(paths)
    n_faces = np.zeros(len(paths), dtype=np.int32)
    errors: list[str] = []
    client = httpx.Client(base_url=service.url, headers=service.headers, timeout=120.0)

    def one(i: int) -> None:
        data = paths[i].read_bytes()
        r = client.post("/embed", files={"image": (paths[i].name, data, "image/jpeg")})
        if r.status_code != 200:
            errors.append(f"{paths[i].name}: {r.status_code} {r.text[:120]}")
            return
        faces = r.json()["faces"]
        n_faces[i] = len(faces)
        f = largest_face(faces)
        if f is not None:
            embs[i] = np.asarray(f["embedding"], dtype=np.float32)

    t0 = time.perf_counter()
    with client, cf.ThreadPoolExecutor(concurrency) as pool:
        for k, _ in enumerate(pool.map(one, range(len(paths))), 1):
            if k % 250 == 0:
                print(f"service: {k}/{len(paths)} images", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    dim = next((len(e) for e in embs if e is not None), 128)
    mat = np.full((len(paths), dim), np.nan, dtype=np.float32)
    for i, e in enumerate(embs):
        if e is not None:
            mat[i] = e
    return {
        "encodings": mat,
        "n_faces": n_faces,
        "errors": errors,
        "wall_s": wall,
        "images_per_s": len(paths) / wall if wall else None,
    }


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.sum(a * b, axis=-1)


def neg_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return -np.linalg.norm(a - b, axis=-1)


# --------------------------------------------------------------------------- metrics
def roc(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every threshold, from the highest score down; handles ±inf."""
    order = np.argsort(-scores, kind="stable")
    lab = labels[order].astype(bool)
    tp = np.concatenate([[0], np.cumsum(lab)])
    fp = np.concatenate([[0], np.cumsum(~lab)])
    return fp / max(1, (~lab).sum()), tp / max(1, lab.sum())


def auc(far: np.ndarray, tar: np.ndarray) -> float:
    return float(np.trapezoid(tar, far))


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> float:
    """TAR at the threshold that accepts at most ``far`` of the impostor pairs."""
    imp = np.sort(scores[~labels])[::-1]
    k = int(np.floor(far * len(imp)))  # impostors allowed above the threshold
    thr = imp[k] if k < len(imp) else -np.inf
    return float((scores[labels] > thr).mean())


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    finite = np.unique(scores[np.isfinite(scores)])
    if len(finite) == 0:
        return 0.0
    cands = np.concatenate(
        [[finite[0] - 1e-6], (finite[:-1] + finite[1:]) / 2, [finite[-1] + 1e-6]]
    )
    acc = [((scores >= t) == labels).mean() for t in cands]
    return float(cands[int(np.argmax(acc))])


def ten_fold(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    accs = []
    for k in np.unique(folds):
        test = folds == k
        t = best_threshold(scores[~test], labels[~test])
        accs.append(((scores[test] >= t) == labels[test]).mean())
    return float(np.mean(accs)), float(np.std(accs))


def verification(
    enc: np.ndarray,
    index: dict[Path, int],
    pairs: list[tuple[Path, Path, bool]],
    folds: np.ndarray,
    score_fn: Any,
    own_threshold: float | None,
) -> dict[str, Any]:
    labels = np.array([p[2] for p in pairs])
    a = enc[[index[p[0]] for p in pairs]]
    b = enc[[index[p[1]] for p in pairs]]
    scores = score_fn(a, b).astype(np.float64)
    failed = ~np.isfinite(scores)
    # A pair whose image had no face counts as wrong, whatever the threshold.
    scores[failed & labels] = -np.inf
    scores[failed & ~labels] = np.inf
    mean, std = ten_fold(scores, labels, folds)
    # ROC, AUC and TAR@FAR: a failed pair is never accepted (no face, nothing to accept), so
    # failed genuine pairs lower TAR and failed impostor pairs do not use up the FAR budget.
    roc_scores = np.where(failed, -np.inf, scores)
    far, tar = roc(roc_scores, labels)
    out = {
        "pairs": len(pairs),
        "failed_pairs": int(failed.sum()),
        "accuracy_10fold": round(mean, 4),
        "accuracy_10fold_std": round(std, 4),
        "auc": round(auc(far, tar), 5),
        "tar_at_far_1e-2": round(tar_at_far(roc_scores, labels, 1e-2), 4),
        "tar_at_far_1e-3": round(tar_at_far(roc_scores, labels, 1e-3), 4),
    }
    if own_threshold is not None:
        out["own_threshold"] = own_threshold
        out["accuracy_at_own_threshold"] = round(
            float(((scores >= own_threshold) == labels).mean()), 4
        )
    out["_roc"] = (far, tar)
    return out


def identification(
    enc: np.ndarray,
    index: dict[Path, int],
    gallery: dict[str, Path],
    probes: list[tuple[str, Path]],
    impostors: list[Path],
    score_fn: Any,
    own_threshold: float | None,
) -> dict[str, Any]:
    names = sorted(gallery)
    g = np.stack([enc[index[gallery[n]]] for n in names])
    enrolled = np.all(np.isfinite(g), axis=1)
    g_names = [n for n, ok in zip(names, enrolled, strict=True) if ok]
    g = g[enrolled]

    def best(path: Path) -> tuple[str | None, float]:
        q = enc[index[path]]
        if not np.all(np.isfinite(q)) or len(g) == 0:
            return None, -np.inf  # no face: nothing to match
        s = score_fn(g, q[None, :])
        i = int(np.argmax(s))
        return g_names[i], float(s[i])

    mated = [(name, *best(p)) for name, p in probes]
    non = [best(p) for p in impostors]
    correct = np.array([m[1] == m[0] for m in mated])
    mated_scores = np.array([m[2] for m in mated])
    non_scores = np.array([s for _, s in non])
    out: dict[str, Any] = {
        "enrolled_people": len(names),
        "gallery_no_face": int((~enrolled).sum()),
        "mated_probes": len(mated),
        "probe_no_face": int(sum(m[1] is None for m in mated)),
        "impostor_probes": len(non),
        "impostor_no_face": int(sum(n[0] is None for n in non)),
        "rank1": round(float(correct.mean()), 4) if len(correct) else None,
    }
    finite_non = np.sort(non_scores)[::-1]
    if len(finite_non):
        k = int(np.floor(0.01 * len(finite_non)))
        thr = finite_non[k] if k < len(finite_non) else -np.inf
        out["fnir_at_fpir_1e-2"] = round(float(1 - (correct & (mated_scores > thr)).mean()), 4)
    if own_threshold is not None:
        out["fnir_at_own_threshold"] = round(
            float(1 - (correct & (mated_scores >= own_threshold)).mean()), 4
        )
        out["fpir_at_own_threshold"] = round(float((non_scores >= own_threshold).mean()), 4)
    return out


# --------------------------------------------------------------------------- selection
def select(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    split = load_split(args.split) if args.split else None
    val = split.get("val") if split else None
    pairs = read_pairs(data)
    genuine = [p for p in pairs if p[2]]
    impostor = [p for p in pairs if not p[2]]
    n_pairs = args.pairs
    # folds before subsetting: fold of pair i within its kind = i // (len/10)
    gfold = np.arange(len(genuine)) * 10 // len(genuine)
    ifold = np.arange(len(impostor)) * 10 // len(impostor)
    if n_pairs:
        gi = spread(range(len(genuine)), n_pairs)
        ii = spread(range(len(impostor)), n_pairs)
    else:
        gi, ii = list(range(len(genuine))), list(range(len(impostor)))
    sel_pairs = [genuine[i] for i in gi] + [impostor[i] for i in ii]
    folds = np.concatenate([gfold[gi], ifold[ii]])

    people = people_images(data / "lfw" / "train")
    in_genuine = sorted({p[0].parent.name for p in genuine})
    singles = sorted(n for n, imgs in people.items() if len(imgs) == 1)
    if val is not None:
        in_genuine = [n for n in in_genuine if n in val]
        singles = [n for n in singles if n in val]
    enrolled = spread(in_genuine, args.enrolled) if args.enrolled else in_genuine
    imp_people = spread(singles, args.impostors) if args.impostors else singles
    gallery = {n: people[n][0] for n in enrolled}
    probes = [(n, p) for n in enrolled for p in people[n][1 : 1 + args.probes_per_person]]
    impostors = [people[n][0] for n in imp_people]
    return {
        "pairs": sel_pairs,
        "folds": folds,
        "gallery": gallery,
        "probes": probes,
        "impostors": impostors,
        "val": val,
        "split": str(args.split) if args.split else None,
    }


# --------------------------------------------------------------------------- report
def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, (far, tar) in curves.items():
        ax.plot(np.maximum(far, 1e-4), tar, label=label)
    ax.set_xscale("log")
    ax.set_xlim(1e-3, 1)
    ax.set_ylim(0.5, 1.005)
    ax.set_xlabel("false accept rate (impostor pairs)")
    ax.set_ylabel("true accept rate (genuine pairs)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> str:
    vcols = [
        "system",
        "subset",
        "pairs",
        "failed_pairs",
        "accuracy_10fold",
        "accuracy_10fold_std",
        "auc",
        "tar_at_far_1e-2",
        "tar_at_far_1e-3",
        "own_threshold",
        "accuracy_at_own_threshold",
    ]
    icols = [
        "system",
        "enrolled_people",
        "gallery_no_face",
        "mated_probes",
        "probe_no_face",
        "impostor_probes",
        "impostor_no_face",
        "rank1",
        "fnir_at_fpir_1e-2",
        "fnir_at_own_threshold",
        "fpir_at_own_threshold",
    ]
    vrows = [
        {"system": s, "subset": k, **v}
        for s, d in result["systems"].items()
        for k, v in d["verification"].items()
    ]
    irows = [{"system": s, **d["identification"]} for s, d in result["systems"].items()]
    frows = [
        {"system": s, "images": d["images"], "no_face": d["no_face_images"], "errors": d["errors"]}
        for s, d in result["systems"].items()
    ]
    lines = [
        "### Accuracy — LFW pairsDevTrain verification and open-set identification",
        "",
        f"Machine: {machine_line(result['machine'])}",
        f"Command: `{result['command']}`",
        f"Service model: {result.get('model')}; peer: {result.get('peer')}",
        "Split: "
        + (result.get("split") or "none given: pairs/people may include training identities"),
        "",
        "Verification",
        "",
        md_table(vrows, vcols),
        "",
        "Open-set identification (gallery = first image per enrolled person)",
        "",
        md_table(irows, icols),
        "",
        "Images per system (no face = counted as failure, see above)",
        "",
        md_table(frows, ["system", "images", "no_face", "errors"]),
        "",
        f"ROC: `{result.get('roc_png')}`",
        "",
        "Targets: " + "; ".join(result["targets"]),
    ]
    return "\n".join(lines)


def targets(result: dict[str, Any]) -> list[str]:
    s = result["systems"]
    out = []
    ours = s.get("service")
    peer = s.get("face_recognition")
    if ours:
        subset = "never_seen" if "never_seen" in ours["verification"] else "all"
        acc = ours["verification"][subset]["accuracy_10fold"]
        out.append(
            f"verification ({subset}) {acc:.4f} vs ≥ {TARGET_VERIFICATION}: "
            + (
                "MET"
                if acc >= TARGET_VERIFICATION
                else f"MISSED by {TARGET_VERIFICATION - acc:.4f}"
            )
            + ("" if subset == "never_seen" else " (no split given: not a never-seen figure)")
        )
    if ours and peer:
        a, b = ours["identification"]["rank1"], peer["identification"]["rank1"]
        out.append(
            f"identification rank-1 ours {a} vs face_recognition {b}: "
            + ("MET" if a >= b else f"MISSED by {b - a:.4f}")
        )
        a = ours["verification"]["all"]["accuracy_10fold"]
        b = peer["verification"]["all"]["accuracy_10fold"]
        out.append(
            f"verification ours {a} vs face_recognition {b}: "
            + ("MET" if a >= b else f"MISSED by {b - a:.4f}")
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--url", default=None, help="use a running service instead of starting one")
    ap.add_argument("--model-dir", default=None, help="FACEID_MODEL_DIR for the started service")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--split", type=Path, default=None, help="identity split JSON (train/val)")
    ap.add_argument("--pairs", type=int, default=0, help="pairs of each kind (0 = all 1,100)")
    ap.add_argument("--enrolled", type=int, default=400, help="enrolled people (0 = all)")
    ap.add_argument("--impostors", type=int, default=400, help="impostor people (0 = all)")
    ap.add_argument("--probes-per-person", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=4, help="/embed requests in flight")
    ap.add_argument("--no-peer", action="store_true", help="skip face_recognition")
    ap.add_argument("--peer-venv", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="24+24 pairs, 8 enrolled, 8 impostors")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.pairs, args.enrolled, args.impostors, args.probes_per_person = 24, 8, 8, 2
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)

    sel = select(args, args.data)
    images = sorted(
        {p for a, b, _ in sel["pairs"] for p in (a, b)}
        | set(sel["gallery"].values())
        | {p for _, p in sel["probes"]}
        | set(sel["impostors"])
    )
    index = {p: i for i, p in enumerate(images)}
    pairs = sel["pairs"]
    folds = sel["folds"]
    val = sel["val"]
    never_seen = (
        np.array([p[0].parent.name in val and p[1].parent.name in val for p in pairs])
        if val is not None
        else None
    )
    print(f"accuracy: {len(pairs)} pairs, {len(images)} distinct images", file=sys.stderr)

    result: dict[str, Any] = {
        "command": "python -m bench.accuracy "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "split": sel["split"],
        "images": len(images),
        "systems": {},
    }
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def score_system(name: str, enc: np.ndarray, fn: Any, thr: float | None, extra: dict) -> None:
        ver = {"all": verification(enc, index, pairs, folds, fn, thr)}
        if never_seen is not None and never_seen.any():
            sub = [p for p, ok in zip(pairs, never_seen, strict=True) if ok]
            ver["never_seen"] = verification(enc, index, sub, folds[never_seen], fn, thr)
        curves[f"{name} (AUC {ver['all']['auc']:.4f})"] = ver["all"].pop("_roc")
        ver.get("never_seen", {}).pop("_roc", None)
        ident = identification(enc, index, sel["gallery"], sel["probes"], sel["impostors"], fn, thr)
        result["systems"][name] = {
            "verification": ver,
            "identification": ident,
            "images": len(images),
            "no_face_images": int((~np.all(np.isfinite(enc), axis=1)).sum()),
            **extra,
        }

    with live_service(args.url, model_dir=args.model_dir, api_key=args.api_key) as service:
        result["model"] = (service.health or {}).get("model")
        emb = embed_service(service, images, args.concurrency)
    score_system(
        "service",
        emb["encodings"],
        cosine,
        service.threshold,
        {
            "errors": len(emb["errors"]),
            "error_samples": emb["errors"][:5],
            "images_per_s": round(emb["images_per_s"], 2),
        },
    )
    if not args.no_peer:
        from bench.peer import PEER_NAME, run_peer

        result["peer"] = PEER_NAME
        r = run_peer(images, venv=args.peer_venv)
        score_system(
            "face_recognition",
            r["encodings"],
            neg_distance,
            -PEER_THRESHOLD_DISTANCE,
            {"errors": 0, "images_per_s": round(r["summary"]["images_per_s"], 2)},
        )
    png = out_dir / "accuracy_roc.png"
    plot_roc(curves, png, f"LFW pairsDevTrain ROC ({len(pairs)} pairs, failures counted)")
    result["roc_png"] = str(png.relative_to(REPO) if png.is_relative_to(REPO) else png)
    result["targets"] = targets(result)
    write_results(out_dir, "accuracy", result, markdown(result))
    print(json.dumps({"targets": result["targets"]}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
