"""Step 3: fit each head on ALL training identities (split train keys) and evaluate it on
LFW DevTrain pairs + the validation split through the unchanged
training.evaluate.evaluate() (same pairs, folds, seeds as `python -m training evaluate`).

The embed fn handed to evaluate() is  crops -> faceid/2 embedding (looked up by crop hash
from emb_faceid2.npz, computed by embed.py with savedmodel_embed_fn) -> head -> L2 norm.
The identity head must reproduce model_store/faceid/2/evaluation.json.

Also computes paired noise estimates vs the identity head:
- LFW: per-fold accuracy differences (same 10 folds, thresholds re-chosen per head),
  and discordant pairs;
- validation pairs: per-fold differences on the 40k balanced pairs;
- validation rank-1: discordant mated probes (McNemar) and a bootstrap over probe people.

Run from the repository root, script 3 of 5 (order: embed, select_cv, final, fnir_boot, table);
the split is $FACEID_SPLIT as in embed.py, default runs/transfer12/split.json:

    FACEID_CACHE_DIR=... python docs/experiments/linear_heads/final.py \
        > runs/linear_heads/final.log
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
import heads as H
from embed import DATASETS, SPLIT, crop_hash

from training.config import resolve_cache_dir, resolve_data_root
from training.data import Split, load_cache
from training.evaluate import (
    _best_threshold,
    accuracy_at,
    embed_identities,
    evaluate,
    lfw_pair_scores,
    sample_pairs,
    summary,
)

OUT = ROOT / "runs" / "linear_heads"


def fold_accs(
    scores: np.ndarray, same: np.ndarray, folds: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Per-fold accuracies exactly as verification_metrics(interleave=True) + kfold_accuracy,
    plus the per-pair correctness at the fold thresholds (in the interleaved order)."""
    same = same.astype(bool)
    order = np.r_[np.nonzero(same)[0], np.nonzero(~same)[0]]
    rank = np.r_[
        np.linspace(0, 1, same.sum(), endpoint=False),
        np.linspace(0, 1, (~same).sum(), endpoint=False),
    ]
    perm = order[np.argsort(rank, kind="stable")]
    s, y = scores[perm], same[perm]
    n = len(s)
    fold_of = np.arange(n) * folds // n
    accs, right = [], np.zeros(n, bool)
    for f in range(folds):
        test = fold_of == f
        fit = ~test & np.isfinite(s)
        thr = _best_threshold(s[fit], y[fit])
        accs.append(accuracy_at(s[test], y[test], thr))
        with np.errstate(invalid="ignore"):
            right[test] = ((s[test] >= thr) == y[test]) & np.isfinite(s[test])
    return np.array(accs), right


def rank1_vector(
    emb: np.ndarray, labels: np.ndarray, seed: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Per mated probe rank-1 correctness, same gallery/probe draw as open_set_identification."""
    rng = np.random.default_rng(seed)
    people = np.unique(labels)
    enrolled = set(rng.permutation(people)[: len(people) // 2].tolist())
    g, mated = [], []
    for p in people:
        idx = np.nonzero(labels == p)[0]
        if p in enrolled:
            g.append(idx[0])
            mated.extend(idx[1:].tolist())
    sims = emb[mated] @ emb[g].T
    return labels[np.array(g)][np.argmax(sims, 1)] == labels[mated], labels[mated]


def main() -> None:
    z = np.load(OUT / "emb_faceid2.npz")
    table = dict(zip(z["hashes"].tolist(), z["embeddings"], strict=True))
    tr = z["is_train"]
    xtr, ytr = z["embeddings"][tr].astype(np.float64), z["owner"][tr]
    sel = json.loads((OUT / "selection.json").read_text())

    identities = load_cache(resolve_cache_dir(), DATASETS)
    split = Split.load(SPLIT)
    assert not set(split.train) & set(split.val)
    pairs_file = resolve_data_root() / "lfw/pairsDevTrain.txt"

    # candidates: every method's training-CV choice, plus a few fixed reference points
    cands: list[tuple[str, dict, str]] = []
    for m, r in sel["best_per_method"].items():
        cands.append((m, r["params"], "CV-selected"))
    extra = [
        ("wccn", {"alpha": 0.1, "center": True}),
        ("wccn", {"alpha": 1.0, "center": True}),
        ("wccn", {"alpha": 0.01, "center": False}),
        ("lda", {"alpha": 0.1, "k": 64}),
        ("lda", {"alpha": 0.1, "k": 96}),
        ("lda", {"alpha": 1.0, "k": 96}),
        ("pca_white", {"alpha": 0.0, "k": 128}),
        ("pca_white", {"alpha": 0.0, "k": 64}),
        ("pca_white", {"alpha": 0.1, "k": 96}),
    ]
    for m, p in extra:
        if not any(c[0] == m and c[1] == p for c in cands):
            cands.append((m, p, "reference (not selected)"))

    fitters = {
        "identity": lambda p: H.identity_head(xtr, ytr),
        "center": lambda p: H.center_head(xtr, ytr),
        "wccn": lambda p: H.wccn_head(xtr, ytr, p["alpha"], p["center"]),
        "lda": lambda p: H.lda_head(xtr, ytr, p["alpha"], p["k"]),
        "pca_white": lambda p: H.pca_white_head(xtr, ytr, p["alpha"], p["k"]),
    }

    def make_embed(head):
        def embed(crops: np.ndarray) -> np.ndarray:
            raw = np.stack([table[crop_hash(c)] for c in crops]).astype(np.float64)
            return H.apply(raw, head)

        return embed

    val_keys = [k for k in split.val if k in identities]
    results, base = [], None
    heads_fitted = {}
    for m, p, tag in cands:
        head = fitters[m](p)
        heads_fitted[(m, json.dumps(p, sort_keys=True))] = head
        embed = make_embed(head)
        res = evaluate(
            embed, identities, split.val, out_dir=None, lfw_pairs=pairs_file, plots=False
        )
        s = summary(res)
        # paired-noise material
        l_scores, l_same, _ = lfw_pair_scores(pairs_file, identities, embed)
        l_accs, l_right = fold_accs(l_scores, l_same)
        emb, labels = embed_identities(identities, val_keys, embed)
        a, b, same = sample_pairs(labels, 20000, 200000, 0)
        vs = np.einsum("ij,ij->i", emb[a], emb[b]).astype(np.float64)
        n_bal = min(same.sum(), (~same).sum())
        bal = np.r_[np.nonzero(same)[0][:n_bal], np.nonzero(~same)[0][:n_bal]]
        v_accs, _ = fold_accs(vs[bal], same[bal])
        r1, r1_people = rank1_vector(emb, labels)
        assert abs(l_accs.mean() - s["lfw_accuracy"]) < 1e-12
        assert abs(v_accs.mean() - s["val_accuracy"]) < 1e-12
        assert abs(r1.mean() - s["val_rank1"]) < 1e-12
        row = {
            "method": m,
            "params": p,
            "tag": tag,
            "k": int(head[1].shape[1]),
            "lfw_acc": s["lfw_accuracy"],
            "lfw_acc_std": res["lfw_pairs"]["accuracy_std"],
            "lfw_tar1e-3": s["lfw_tar_at_far_1e-03"],
            "lfw_auc": s["lfw_auc"],
            "val_acc": s["val_accuracy"],
            "val_tar1e-3": s["val_tar_at_far_1e-03"],
            "val_rank1": s["val_rank1"],
            "val_fnir": s["val_fnir_at_fpir_1e-02"],
            "full": res,
        }
        if base is None:
            base = dict(l_accs=l_accs, l_right=l_right, v_accs=v_accs, r1=r1, people=r1_people)
        else:
            d = l_accs - base["l_accs"]
            dv = v_accs - base["v_accs"]
            # rank-1 bootstrap over mated-probe people (clustered), paired
            rng = np.random.default_rng(0)
            ppl = np.unique(base["people"])
            idx_of = {q: np.nonzero(base["people"] == q)[0] for q in ppl}
            diff = r1.astype(float) - base["r1"].astype(float)
            boots = []
            for _ in range(2000):
                pick = np.concatenate([idx_of[q] for q in rng.choice(ppl, len(ppl))])
                boots.append(diff[pick].mean())
            row["paired"] = {
                "lfw_fold_diff_mean": float(d.mean()),
                "lfw_fold_diff_std": float(d.std()),
                "lfw_fold_diff_se": float(d.std(ddof=1) / np.sqrt(len(d))),
                "lfw_pairs_fixed": int((l_right & ~base["l_right"]).sum()),
                "lfw_pairs_broken": int((~l_right & base["l_right"]).sum()),
                "val_fold_diff_mean": float(dv.mean()),
                "val_fold_diff_se": float(dv.std(ddof=1) / np.sqrt(len(dv))),
                "rank1_probes_fixed": int((r1 & ~base["r1"]).sum()),
                "rank1_probes_broken": int((~r1 & base["r1"]).sum()),
                "rank1_diff_boot95": [
                    float(np.percentile(boots, 2.5)),
                    float(np.percentile(boots, 97.5)),
                ],
            }
        results.append(row)
        print(
            f"{m:10s} {json.dumps(p):32s} k={row['k']:3d} LFW {row['lfw_acc'] * 100:.2f}±"
            f"{row['lfw_acc_std'] * 100:.2f} TAR {row['lfw_tar1e-3'] * 100:.2f} | val acc "
            f"{row['val_acc'] * 100:.2f} r1 {row['val_rank1'] * 100:.2f} "
            f"fnir {row['val_fnir'] * 100:.2f}"
            f"  {json.dumps(row.get('paired', {}))}",
            flush=True,
        )
    (OUT / "final.json").write_text(json.dumps(results, indent=1))
    # the best method by the TRAINING-ONLY selection score (not by LFW/val)
    best_m = max(
        (r for r in sel["best_per_method"].values() if r["method"] != "identity"),
        key=lambda r: r["score"],
    )
    head = heads_fitted[(best_m["method"], json.dumps(best_m["params"], sort_keys=True))]
    np.savez(
        OUT / "projection.npz",
        W=head[1].astype(np.float32),
        mean=head[0].astype(np.float32),
        method=best_m["method"],
        params=json.dumps(best_m["params"]),
        usage="z = l2norm((x - mean) @ W); score = cosine(z1, z2); x = faceid/2 embedding",
    )
    print("best by training-only CV:", best_m["method"], best_m["params"], "-> projection.npz")


if __name__ == "__main__":
    main()
