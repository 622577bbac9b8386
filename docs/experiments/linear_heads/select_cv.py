"""Step 2: choose each head's hyper-parameters on TRAINING identities only.

5 identity-disjoint folds of the split's training identities (seeded): fit the head on 4/5,
measure on the held-out 1/5 with the repo's own metric functions (pair_verification with
all genuine pairs up to 20k + 200k impostors; open_set_identification, seed 7).
Selection score (fixed before any LFW / validation number was looked at):
    score = mean over folds of (TAR@FAR1e-3 + rank-1 + (1 - FNIR@FPIR1%)) / 3
Neither LFW pairs nor validation identities are touched here.

Run from the repository root, script 2 of 5 (order: embed, select_cv, final, fnir_boot, table):

    python docs/experiments/linear_heads/select_cv.py > runs/linear_heads/select.log
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

from training.evaluate import open_set_identification, pair_verification

OUT = ROOT / "runs" / "linear_heads"
FOLDS = 5
ALPHAS = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
KS = [64, 80, 96, 112, 128]


def grid():
    yield "identity", {}, H.identity_head
    yield "center", {}, H.center_head
    for a in ALPHAS:
        for c in (False, True):
            yield "wccn", {"alpha": a, "center": c}, lambda x, y, a=a, c=c: H.wccn_head(x, y, a, c)
    for a in ALPHAS:
        for k in KS:
            if k == 128:
                continue  # LDA k=128 == centred WCCN with the same alpha (same cosines)
            yield "lda", {"alpha": a, "k": k}, lambda x, y, a=a, k=k: H.lda_head(x, y, a, k)
    for a in [0.0, 0.1, 0.3, 1.0, 3.0]:
        for k in KS:
            yield (
                "pca_white",
                {"alpha": a, "k": k},
                lambda x, y, a=a, k=k: H.pca_white_head(x, y, a, k),
            )


def main() -> None:
    z = np.load(OUT / "emb_faceid2.npz")
    tr = z["is_train"]
    x, y = z["embeddings"][tr].astype(np.float64), z["owner"][tr]
    ids = np.unique(y)
    rng = np.random.default_rng(2024)
    fold_of_id = dict(zip(rng.permutation(ids).tolist(), np.arange(len(ids)) % FOLDS, strict=True))
    fold = np.array([fold_of_id[int(c)] for c in y])
    rows = []
    for name, params, fit in grid():
        per = []
        for f in range(FOLDS):
            fit_m, test_m = fold != f, fold == f
            head = fit(x[fit_m], y[fit_m])
            e = H.apply(x[test_m], head)
            lab = y[test_m]
            ver, _, _ = pair_verification(e, lab, 20000, 200000, 10)
            ide = open_set_identification(e, lab, 7)
            per.append(
                [ver["tar_at_far_1e-03"], ide["rank1"], ide["fnir_at_fpir_1e-02"], ver["accuracy"]]
            )
        per = np.array(per)
        tar, r1, fnir, acc = per.mean(0)
        score = (tar + r1 + (1 - fnir)) / 3
        rows.append(
            {
                "method": name,
                "params": params,
                "score": score,
                "tar1e-3": tar,
                "rank1": r1,
                "fnir": fnir,
                "acc": acc,
                "score_per_fold": ((per[:, 0] + per[:, 1] + 1 - per[:, 2]) / 3).tolist(),
            }
        )
        print(
            f"{name:10s} {json.dumps(params):32s} score {score:.4f}  tar {tar:.4f}  "
            f"r1 {r1:.4f}  fnir {fnir:.4f}  acc {acc:.4f}",
            flush=True,
        )
    best = {}
    for r in rows:
        if r["method"] not in best or r["score"] > best[r["method"]]["score"]:
            best[r["method"]] = r
    (OUT / "selection.json").write_text(
        json.dumps({"folds": FOLDS, "rows": rows, "best_per_method": best}, indent=1)
    )
    print("\nbest per method (training-only CV):")
    for m, r in best.items():
        print(f"  {m:10s} {json.dumps(r['params']):32s} score {r['score']:.4f}")


if __name__ == "__main__":
    main()
