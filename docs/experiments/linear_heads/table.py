"""Print the markdown tables of results.md from selection.json, final.json and the
reproduction's evaluation.json.

Run from the repository root, script 5 of 5 (order: embed, select_cv, final, fnir_boot, table):

    python docs/experiments/linear_heads/table.py
"""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

OUT = ROOT / "runs" / "linear_heads"
final = json.loads((OUT / "final.json").read_text())
sel = json.loads((OUT / "selection.json").read_text())
cv = {(r["method"], json.dumps(r["params"], sort_keys=True)): r for r in sel["rows"]}


def pct(v):
    return f"{100 * v:.2f}"


print(
    "| method | params | k | chosen how | train-CV score | LFW acc ± std | LFW TAR@1e-3 "
    "| val pair acc | val rank-1 | val FNIR@FPIR1% "
    "| LFW Δacc vs identity (paired fold SE; pairs fixed/broken) "
    "| val rank-1 Δ (95 % CI; probes fixed/broken) |"
)
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in final:
    c = cv.get((r["method"], json.dumps(r["params"], sort_keys=True)))
    p = r.get("paired")
    if p:
        lfw_d = (
            f"{100 * p['lfw_fold_diff_mean']:+.2f} (±{100 * p['lfw_fold_diff_se']:.2f}; "
            f"{p['lfw_pairs_fixed']}/{p['lfw_pairs_broken']})"
        )
        lo, hi = p["rank1_diff_boot95"]
        r1_d = (
            f"{100 * (r['val_rank1'] - final[0]['val_rank1']):+.2f} "
            f"({100 * lo:+.2f}…{100 * hi:+.2f}; "
            f"{p['rank1_probes_fixed']}/{p['rank1_probes_broken']})"
        )
    else:
        lfw_d = r1_d = "—"
    params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "—"
    tag = "training CV" if r["tag"] == "CV-selected" else "reference, not selected"
    if r["method"] == "identity":
        tag = "baseline (no head)"
    print(
        f"| {r['method']} | {params} | {r['k']} | {tag} | {c['score']:.4f} | "
        f"{pct(r['lfw_acc'])} ± {pct(r['lfw_acc_std'])} | {pct(r['lfw_tar1e-3'])} | "
        f"{pct(r['val_acc'])} | {pct(r['val_rank1'])} | {pct(r['val_fnir'])} | {lfw_d} | {r1_d} |"
    )
