"""Step 1: embed every cached crop of the split's train + val identities with
model_store/faceid/2 once (through training.evaluate.savedmodel_embed_fn), keyed by the
SHA-1 of the crop bytes, so every candidate head can then be evaluated through the
unchanged training.evaluate.evaluate() without running the network again.

Run from the repository root, script 1 of 5 (order: embed, select_cv, final, fnir_boot, table);
outputs go to the git-ignored runs/linear_heads/:

    FACEID_CACHE_DIR=... python docs/experiments/linear_heads/embed.py

The split is $FACEID_SPLIT, default runs/transfer12/split.json (the 2026-12-02 run used
the transfer12 run's split.json, seed 1234).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from training.config import resolve_cache_dir
from training.data import Split, load_cache
from training.evaluate import savedmodel_embed_fn

OUT = ROOT / "runs" / "linear_heads"
# the identity split: $FACEID_SPLIT, default ROOT/runs/transfer12/split.json
SPLIT = Path(os.environ.get("FACEID_SPLIT", ROOT / "runs" / "transfer12" / "split.json"))
MODEL = ROOT / "model_store/faceid/2"
DATASETS = ["orl", "celeba", "lfw"]


def crop_hash(c: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(c).tobytes()).hexdigest()


def main() -> None:
    identities = load_cache(resolve_cache_dir(), DATASETS)
    split = Split.load(SPLIT)
    train = [k for k in split.train if k in identities]
    val = [k for k in split.val if k in identities]
    print(f"train ids {len(train)}/{len(split.train)}, val ids {len(val)}/{len(split.val)}")
    keys = train + val
    crops = np.concatenate([identities[k].crops for k in keys])
    owner = np.concatenate([np.full(len(identities[k].crops), i) for i, k in enumerate(keys)])
    print(f"{len(crops)} crops to embed")
    embed = savedmodel_embed_fn(MODEL, batch_size=128)
    t = time.time()
    emb = embed(crops)
    print(f"embedded in {time.time() - t:.0f}s")
    hashes = np.array([crop_hash(c) for c in crops])
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(
        OUT / "emb_faceid2.npz",
        keys=np.array(keys),
        owner=owner,
        is_train=owner < len(train),
        embeddings=emb,
        hashes=hashes,
    )
    print("wrote", OUT / "emb_faceid2.npz")


if __name__ == "__main__":
    main()
