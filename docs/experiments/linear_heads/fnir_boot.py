"""Paired bootstrap (over people) of validation open-set FNIR@FPIR1% and rank-1 for the
CV-selected heads vs the identity head, same gallery/probe draw as
training.evaluate.open_set_identification (seed 7).

Run from the repository root, script 4 of 5 (order: embed, select_cv, final, fnir_boot, table):

    python docs/experiments/linear_heads/fnir_boot.py
"""

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
import heads as H

from training.evaluate import open_set_identification

OUT = ROOT / "runs" / "linear_heads"
z = np.load(OUT / "emb_faceid2.npz")
tr = z["is_train"]
xtr, ytr = z["embeddings"][tr].astype(np.float64), z["owner"][tr]
xv = z["embeddings"][~tr].astype(np.float64)
yv = z["owner"][~tr] - z["owner"][~tr].min()  # 0..n_val-1, the order evaluate() uses
sel = json.loads((OUT / "selection.json").read_text())["best_per_method"]

rng = np.random.default_rng(7)
people = np.unique(yv)
enrolled = set(rng.permutation(people)[: len(people) // 2].tolist())
g, mated, nonm = [], [], []
for p in people:
    idx = np.nonzero(yv == p)[0]
    if p in enrolled:
        g.append(idx[0])
        mated.extend(idx[1:].tolist())
    else:
        nonm.extend(idx.tolist())
g, mated, nonm = map(np.array, (g, mated, nonm))

fit = {
    "identity": lambda p: H.identity_head(xtr, ytr),
    "center": lambda p: H.center_head(xtr, ytr),
    "wccn": lambda p: H.wccn_head(xtr, ytr, p["alpha"], p["center"]),
    "lda": lambda p: H.lda_head(xtr, ytr, p["alpha"], p["k"]),
    "pca_white": lambda p: H.pca_white_head(xtr, ytr, p["alpha"], p["k"]),
}
per = {}
for m, r in sel.items():
    e = H.apply(xv, fit[m](r["params"]))
    ref = open_set_identification(e, yv, 7)
    sm = e[mated] @ e[g].T
    best = np.argmax(sm, 1)
    ok = yv[g][best] == yv[mated]
    ms = sm[np.arange(len(mated)), best]
    ns = (e[nonm] @ e[g].T).max(1)
    per[m] = (ok, ms, ns, ref)

mp, npp = yv[mated], yv[nonm]
mated_people, non_people = np.unique(mp), np.unique(npp)
m_idx = {q: np.nonzero(mp == q)[0] for q in mated_people}
n_idx = {q: np.nonzero(npp == q)[0] for q in non_people}


def fnir(ok, ms, ns):
    r = np.sort(ns)[::-1]
    k = int(np.floor(0.01 * len(r)))
    thr = np.nextafter(r[k], np.inf)
    return np.mean(~(ok & (ms >= thr)))


B = 1000
boot = {m: [] for m in per}
brng = np.random.default_rng(0)
for _ in range(B):
    mi = np.concatenate([m_idx[q] for q in brng.choice(mated_people, len(mated_people))])
    ni = np.concatenate([n_idx[q] for q in brng.choice(non_people, len(non_people))])
    for m, (ok, ms, ns, _) in per.items():
        boot[m].append(fnir(ok[mi], ms[mi], ns[ni]))
res = {}
base = np.array(boot["identity"])
for m, (ok, ms, ns, ref) in per.items():
    f0 = fnir(ok, ms, ns)
    assert abs(f0 - ref["fnir_at_fpir_1e-02"]) < 1e-12, (f0, ref)
    d = np.array(boot[m]) - base
    res[m] = {
        "fnir": f0,
        "fnir_boot_sd": float(np.std(boot[m])),
        "fnir_diff_vs_identity_95": [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))],
    }
    print(m, json.dumps(res[m]))
(OUT / "fnir_boot.json").write_text(json.dumps(res, indent=1))
