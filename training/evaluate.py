"""Evaluation of any embedding function ``crops (N×112×112×3 uint8) → L2-normalised N×D``.

- verification on LFW protocol pairs (crops looked up in the cache by file name; a pair
  with an image that had no detected face counts as an error) and on pairs drawn from
  the identity-disjoint validation split: 10-fold accuracy (threshold chosen on 9 folds,
  tested on the 10th), ROC AUC, TAR at FAR 1e-2 / 1e-3;
- open-set 1:N identification on the validation people: rank-1 and FNIR at FPIR 1 %;
- the operating threshold (cosine similarity at the target FAR) used by the service.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training.data import Identity, read_pairs

log = logging.getLogger(__name__)

EmbedFn = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------- embedders
def keras_embed_fn(model: Any, batch_size: int = 128, flip_tta: bool = False) -> EmbedFn:
    """Wrap a Keras model (float32 [0,255] pixels → raw embedding) as an EmbedFn."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def _run(x: tf.Tensor) -> tf.Tensor:
        return model(tf.cast(x, tf.float32), training=False)

    def embed(crops: np.ndarray) -> np.ndarray:
        return _batched(lambda b: np.asarray(_run(b)), crops, batch_size, flip_tta)

    return embed


def savedmodel_embed_fn(path: str | Path, batch_size: int = 128, flip_tta: bool = False) -> EmbedFn:
    """Wrap an exported SavedModel's ``serving_default`` signature as an EmbedFn."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    fn = loaded.signatures["serving_default"]
    input_name = next(iter(fn.structured_input_signature[1]))

    def embed(crops: np.ndarray) -> np.ndarray:
        return _batched(
            lambda b: fn(**{input_name: tf.constant(b, tf.uint8)})["embedding"].numpy(),
            crops,
            batch_size,
            flip_tta,
        )

    embed.loaded = loaded  # type: ignore[attr-defined]  # keep the module alive
    return embed


def _batched(
    run: Callable[[np.ndarray], np.ndarray], crops: np.ndarray, bs: int, flip: bool
) -> np.ndarray:
    outs = []
    for i in range(0, len(crops), bs):
        batch = np.ascontiguousarray(crops[i : i + bs])
        e = run(batch).astype(np.float32)
        if flip:
            e = e + run(np.ascontiguousarray(batch[:, :, ::-1])).astype(np.float32)
        outs.append(e)
    if not outs:
        return np.zeros((0, 1), np.float32)
    emb = np.concatenate(outs)
    # same formula as tf.math.l2_normalize inside the exported model
    return emb / np.sqrt(np.maximum(np.sum(emb * emb, axis=1, keepdims=True), 1e-12))


# --------------------------------------------------------------------------- metrics
def roc_curve(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, thresholds) for decisions ``score >= threshold``, thresholds decreasing."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order].astype(bool)
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tar = np.r_[0.0, tp[distinct] / max(y.sum(), 1)]
    far = np.r_[0.0, fp[distinct] / max((~y).sum(), 1)]
    thr = np.r_[np.inf, s[distinct]]
    return far, tar, thr


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    far, tar, _ = roc_curve(scores, same)
    return float(np.trapezoid(tar, far))


def tar_at_far(scores: np.ndarray, same: np.ndarray, far_target: float) -> tuple[float, float]:
    """(TAR, threshold) at the largest FAR not above ``far_target``."""
    impostor = np.sort(scores[~same.astype(bool)])[::-1]
    genuine = scores[same.astype(bool)]
    if len(impostor) == 0 or len(genuine) == 0:
        return float("nan"), float("nan")
    k = int(np.floor(far_target * len(impostor)))  # impostors allowed at or above threshold
    # threshold just above the (k+1)-th highest impostor score → at most k false accepts
    thr = float(np.nextafter(impostor[k], np.inf)) if k < len(impostor) else float(impostor[-1])
    return float(np.mean(genuine >= thr)), thr


def _best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Accuracy-maximising threshold, placed midway between neighbouring scores."""
    u = np.unique(scores[np.isfinite(scores)])
    cands = np.r_[u[0] - 1e-6, (u[:-1] + u[1:]) / 2, u[-1] + 1e-6]
    gen = np.sort(scores[same])
    imp = np.sort(scores[~same])
    # correct = genuine at or above t + impostors below t
    correct = (len(gen) - np.searchsorted(gen, cands, side="left")) + np.searchsorted(
        imp, cands, side="left"
    )
    return float(cands[int(np.argmax(correct))])


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Share of pairs decided right at ``threshold``; a NaN score (no face) is always wrong."""
    decided = np.isfinite(scores)
    with np.errstate(invalid="ignore"):
        right = (scores >= threshold) == same
    return float(np.mean(right & decided)) if len(scores) else float("nan")


def _never_accepted(scores: np.ndarray) -> np.ndarray:
    """For ROC and TAR@FAR, a pair without a face is rejected at every threshold."""
    return np.where(np.isfinite(scores), scores, -np.inf)


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: int = 10) -> dict[str, Any]:
    """LFW protocol: per fold, choose the threshold on the other folds, test on this one.

    NaN scores (a pair where an image had no detected face) count as errors.
    """
    n = len(scores)
    idx = np.arange(n)
    fold_of = idx * folds // max(n, 1)  # contiguous folds as in LFW's pair files
    accs, thrs = [], []
    for f in range(folds):
        test = fold_of == f
        if not test.any():
            continue
        fit = ~test & np.isfinite(scores)
        thr = _best_threshold(scores[fit], same[fit])
        accs.append(accuracy_at(scores[test], same[test], thr))
        thrs.append(thr)
    return {
        "accuracy": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "threshold": float(np.mean(thrs)),
    }


def verification_metrics(
    scores: np.ndarray, same: np.ndarray, folds: int = 10, interleave: bool = True
) -> dict[str, Any]:
    """10-fold accuracy, AUC, TAR@FAR 1e-2/1e-3 (+ thresholds) for scored pairs."""
    same = same.astype(bool)
    if interleave:
        # balance genuine/impostor pairs in every fold (LFW's folds are balanced)
        order = np.r_[np.nonzero(same)[0], np.nonzero(~same)[0]]
        rank = np.r_[
            np.linspace(0, 1, same.sum(), endpoint=False),
            np.linspace(0, 1, (~same).sum(), endpoint=False),
        ]
        perm = order[np.argsort(rank, kind="stable")]
        scores, same = scores[perm], same[perm]
    out = kfold_accuracy(scores, same, folds)
    ranked = _never_accepted(scores)
    out["auc"] = roc_auc(ranked, same)
    for far in (1e-2, 1e-3):
        tar, thr = tar_at_far(ranked, same, far)
        out[f"tar_at_far_{far:.0e}"] = tar
        out[f"threshold_at_far_{far:.0e}"] = thr
    out["genuine_pairs"] = int(same.sum())
    out["impostor_pairs"] = int((~same).sum())
    return out


# --------------------------------------------------------------------------- pairs
def lfw_pair_scores(
    pairs_file: Path,
    identities: dict[str, Identity],
    embed: EmbedFn,
    dataset: str = "lfw",
) -> tuple[np.ndarray, np.ndarray, int]:
    """Cosine scores of the protocol pairs; NaN where an image had no detected face.

    ``kfold_accuracy`` counts such a pair as an error; ROC and TAR@FAR never accept it.
    """
    pairs = read_pairs(pairs_file)
    lookup: dict[tuple[str, str], np.ndarray] = {}
    for p1, f1, p2, f2, _ in pairs:
        for person, fname in ((p1, f1), (p2, f2)):
            ident = identities.get(f"{dataset}/{person}")
            if ident is not None and fname in ident.files:
                lookup[(person, fname)] = ident.crops[ident.files.index(fname)]
    keys = list(lookup)
    emb = dict(zip(keys, embed(np.stack([lookup[k] for k in keys])) if keys else [], strict=False))
    scores = np.empty(len(pairs), np.float64)
    same = np.array([p[4] for p in pairs], dtype=bool)
    missing = 0
    for i, (p1, f1, p2, f2, _) in enumerate(pairs):
        a, b = emb.get((p1, f1)), emb.get((p2, f2))
        if a is None or b is None:
            missing += 1
            scores[i] = np.nan
        else:
            scores[i] = float(a @ b)
    return scores, same, missing


def embed_identities(
    identities: dict[str, Identity], keys: list[str], embed: EmbedFn
) -> tuple[np.ndarray, np.ndarray]:
    crops = np.concatenate([identities[k].crops for k in keys])
    labels = np.concatenate([np.full(len(identities[k].crops), i) for i, k in enumerate(keys)])
    return embed(crops), labels


def sample_pairs(
    labels: np.ndarray, max_genuine: int, max_impostor: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (or a seeded sample of) genuine pairs, and random impostor pairs."""
    rng = np.random.default_rng(seed)
    gen_a: list[np.ndarray] = []
    gen_b: list[np.ndarray] = []
    for lab in np.unique(labels):
        idx = np.nonzero(labels == lab)[0]
        if len(idx) > 1:
            a, b = np.triu_indices(len(idx), 1)
            gen_a.append(idx[a])
            gen_b.append(idx[b])
    ga = np.concatenate(gen_a) if gen_a else np.zeros(0, int)
    gb = np.concatenate(gen_b) if gen_b else np.zeros(0, int)
    if len(ga) > max_genuine:
        pick = rng.choice(len(ga), max_genuine, replace=False)
        ga, gb = ga[pick], gb[pick]
    n = len(labels)
    ia = rng.integers(0, n, size=max_impostor * 2)
    ib = rng.integers(0, n, size=max_impostor * 2)
    keep = labels[ia] != labels[ib]
    ia, ib = ia[keep][:max_impostor], ib[keep][:max_impostor]
    a = np.r_[ga, ia]
    b = np.r_[gb, ib]
    same = np.r_[np.ones(len(ga), bool), np.zeros(len(ia), bool)]
    return a, b, same


def pair_verification(
    emb: np.ndarray,
    labels: np.ndarray,
    max_genuine: int,
    max_impostor: int,
    folds: int,
    seed: int = 0,
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    a, b, same = sample_pairs(labels, max_genuine, max_impostor, seed)
    scores = np.einsum("ij,ij->i", emb[a], emb[b]).astype(np.float64)
    # the 10-fold accuracy uses a balanced subset; AUC/TAR/threshold use every pair
    n_bal = min(same.sum(), (~same).sum())
    gen = np.nonzero(same)[0][:n_bal]
    imp = np.nonzero(~same)[0][:n_bal]
    bal = np.r_[gen, imp]
    metrics = verification_metrics(scores, same, folds)
    balanced = verification_metrics(scores[bal], same[bal], folds)
    metrics.update(
        accuracy=balanced["accuracy"],
        accuracy_std=balanced["accuracy_std"],
        threshold=balanced["threshold"],
        balanced_pairs=len(bal),
    )
    return metrics, scores, same


# --------------------------------------------------------------------------- 1:N
def open_set_identification(
    emb: np.ndarray, labels: np.ndarray, seed: int = 7, fpir: float = 0.01
) -> dict[str, Any]:
    """Gallery = first image of a random half of the people; probes = their other images
    (mated) + every image of the other half (non-mated impostors)."""
    rng = np.random.default_rng(seed)
    people = np.unique(labels)
    enrolled = set(rng.permutation(people)[: len(people) // 2].tolist())
    gallery_idx, mated_idx, nonmated_idx = [], [], []
    for p in people:
        idx = np.nonzero(labels == p)[0]
        if p in enrolled:
            gallery_idx.append(idx[0])
            mated_idx.extend(idx[1:].tolist())
        else:
            nonmated_idx.extend(idx.tolist())
    if not gallery_idx or not mated_idx:
        return {"rank1": float("nan"), "note": "too few validation people"}
    g = emb[gallery_idx]
    g_labels = labels[gallery_idx]

    def top(idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
        if not idx:
            return np.zeros(0), np.zeros(0, int)
        sims = emb[idx] @ g.T
        best = np.argmax(sims, axis=1)
        return sims[np.arange(len(idx)), best], g_labels[best]

    m_score, m_label = top(mated_idx)
    correct = m_label == labels[mated_idx]
    n_score, _ = top(nonmated_idx)
    out: dict[str, Any] = {
        "gallery": len(gallery_idx),
        "mated_probes": len(mated_idx),
        "nonmated_probes": len(nonmated_idx),
        "rank1": float(np.mean(correct)),
    }
    if len(n_score):
        ranked = np.sort(n_score)[::-1]
        k = int(np.floor(fpir * len(ranked)))
        thr = float(np.nextafter(ranked[k], np.inf)) if k < len(ranked) else float(ranked[-1])
        out["fpir_target"] = fpir
        out["threshold_at_fpir"] = thr
        out["fpir"] = float(np.mean(n_score >= thr))
        out["fnir_at_fpir_1e-02"] = float(np.mean(~(correct & (m_score >= thr))))
    return out


# --------------------------------------------------------------------------- plots
def _plots(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float, out_dir: Path
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (scores, same) in curves.items():
        far, tar, _ = roc_curve(scores, same)
        ax.plot(np.maximum(far, 1e-6), tar, label=f"{name} (AUC {roc_auc(scores, same):.4f})")
    ax.set_xscale("log")
    ax.set_xlim(1e-5, 1)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title("ROC")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / "roc.png", dpi=110)
    plt.close(fig)
    written.append("roc.png")
    for name, (scores, same) in curves.items():
        fig, ax = plt.subplots(figsize=(5, 4))
        bins = np.linspace(-1, 1, 101).tolist()
        ok = np.abs(scores) <= 1.0
        ax.hist(scores[ok & same], bins=bins, alpha=0.6, density=True, label="genuine")
        ax.hist(scores[ok & ~same], bins=bins, alpha=0.6, density=True, label="impostor")
        ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3f}")
        ax.set_xlabel("cosine similarity")
        ax.set_title(f"score distributions: {name}")
        ax.legend()
        fig.tight_layout()
        fname = f"histogram_{name}.png"
        fig.savefig(out_dir / fname, dpi=110)
        plt.close(fig)
        written.append(fname)
    return written


# --------------------------------------------------------------------------- driver
def evaluate(
    embed: EmbedFn,
    identities: dict[str, Identity],
    val_keys: list[str],
    out_dir: Path | None = None,
    lfw_pairs: Path | None = None,
    lfw_dataset: str = "lfw",
    far_target: float = 1e-3,
    folds: int = 10,
    max_genuine_pairs: int = 20000,
    max_impostor_pairs: int = 200000,
    identification_seed: int = 7,
    plots: bool = True,
) -> dict[str, Any]:
    """Run every evaluation; write ``evaluation.json`` and PNGs into ``out_dir``."""
    keys = [k for k in val_keys if k in identities]
    emb, labels = embed_identities(identities, keys, embed)
    val, v_scores, v_same = pair_verification(
        emb, labels, max_genuine_pairs, max_impostor_pairs, folds
    )
    result: dict[str, Any] = {
        "validation": {
            "identities": len(keys),
            "images": len(labels),
            "verification": val,
            "identification": open_set_identification(emb, labels, identification_seed),
        }
    }
    curves = {"validation": (v_scores, v_same)}
    if lfw_pairs is not None:
        l_scores, l_same, missing = lfw_pair_scores(lfw_pairs, identities, embed, lfw_dataset)
        lfw = verification_metrics(l_scores, l_same, folds)
        lfw["pairs_file"] = Path(lfw_pairs).name
        lfw["pairs"] = len(l_scores)
        lfw["missing_pairs"] = missing  # counted as errors
        result["lfw_pairs"] = lfw
        curves["lfw"] = (_never_accepted(l_scores), l_same)
    # the service's default "unknown" threshold: cosine at the target FAR on validation
    _, threshold = tar_at_far(v_scores, v_same, far_target)
    result["threshold"] = {"cosine": threshold, "far_target": far_target, "source": "validation"}
    log.info("evaluation: %s", json.dumps(summary(result)))
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if plots:
            result["figures"] = _plots(curves, threshold, out_dir)
        (out_dir / "evaluation.json").write_text(json.dumps(result, indent=2))
    return result


def summary(result: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of an evaluation (for logs and the model card)."""
    out: dict[str, float] = {}
    v = result["validation"]
    out["val_accuracy"] = v["verification"]["accuracy"]
    out["val_auc"] = v["verification"]["auc"]
    out["val_tar_at_far_1e-03"] = v["verification"]["tar_at_far_1e-03"]
    out["val_rank1"] = v["identification"].get("rank1", float("nan"))
    if "fnir_at_fpir_1e-02" in v["identification"]:
        out["val_fnir_at_fpir_1e-02"] = v["identification"]["fnir_at_fpir_1e-02"]
    if "lfw_pairs" in result:
        lfw = result["lfw_pairs"]
        out["lfw_accuracy"] = lfw["accuracy"]
        out["lfw_auc"] = lfw["auc"]
        out["lfw_tar_at_far_1e-02"] = lfw["tar_at_far_1e-02"]
        out["lfw_tar_at_far_1e-03"] = lfw["tar_at_far_1e-03"]
        out["lfw_missing_pairs"] = lfw["missing_pairs"]
    out["threshold"] = result["threshold"]["cosine"]
    return out
