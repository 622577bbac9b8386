"""GPU figures (issue #5 item 4): training throughput and SavedModel inference throughput.

One short script for a session that is lent the device machine (H100/H200)::

    .venv/bin/python -m bench.gpu                 # the full figures, a few minutes on a GPU
    .venv/bin/python -m bench.gpu --quick         # tiny sizes: checks the script anywhere

- **Training**: images/s through forward, backward and the optimizer step of a training
  recipe (``training/configs``), with the recipe's mixed-precision and XLA settings
  (``auto`` = on with a GPU), timed over the second of two epochs of ``--train-steps``
  steps. The crops and labels are synthetic (random uint8 112×112 images, as many classes
  as the recipe's real training split has identities): the time of a step does not depend
  on pixel values, and the device machine has neither ../shared's prepared cache nor the
  internet. ``scratch`` (MobileFaceNet) always runs; ``transfer`` (FaceNet) runs when its
  pretrained ``.h5`` is found (``FACEID_FACENET_H5``); pass ``--recipes`` to choose.
- **Inference**: the shipped SavedModel (``model_store/faceid/2``) run as it is
  (``engine=savedmodel``, what the service uses with a GPU), at batch 1, 32 and 256:
  images/s and per-batch p50 over ``--infer-seconds`` of repeated calls after a warm-up.

Writes ``bench/results/gpu.{md,json}`` with the card's name (``nvidia-smi``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, RESULTS, machine_info, machine_line, md_table, write_results

# Identities in the real training split (docs/MODEL.md): the margin head's width.
TRAIN_CLASSES = 2088


def _recipes(requested: list[str] | None) -> list[str]:
    if requested:
        return requested
    from training.backbones.facenet import default_pretrained_dir

    names = ["scratch"]
    h5 = os.environ.get("FACEID_FACENET_H5")
    if (h5 and Path(h5).is_file()) or (default_pretrained_dir() / "facenet_keras.h5").is_file():
        names.append("transfer")
    return names


def bench_training(name: str, steps: int, batch: int | None, classes: int) -> dict[str, Any]:
    """Images/s of one recipe's training step on synthetic data (second epoch timed)."""
    import keras
    import tensorflow as tf

    from training.config import load_config
    from training.train import (
        _flag,
        build_backbone_from_config,
        build_training_model,
        has_gpu,
        make_optimizer,
    )

    cfg = load_config(name)
    gpu = has_gpu()
    mixed, jit = _flag(cfg.train.mixed_precision, gpu), _flag(cfg.train.jit_compile, gpu)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    batch = batch or cfg.train.batch_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * 4, 112, 112, 3), dtype=np.uint8)
    labels = rng.integers(0, classes, batch * 4).astype(np.int32)
    ds = (
        tf.data.Dataset.from_tensor_slices(({"image": images, "label": labels}, labels))
        .map(lambda x, y: ({"image": tf.cast(x["image"], tf.float32), "label": x["label"]}, y))
        .repeat()
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    backbone = build_backbone_from_config(cfg)
    trainer, _ = build_training_model(backbone, classes, cfg)
    trainer.compile(
        optimizer=make_optimizer(cfg, steps),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(time.perf_counter() - self._t)

    timer = EpochTimer()
    trainer.fit(ds, epochs=2, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    keras.mixed_precision.set_global_policy("float32")
    timed = timer.seconds[-1]
    return {
        "recipe": name,
        "backbone": cfg.model.backbone,
        "parameters": int(backbone.count_params()),
        "batch": batch,
        "classes": classes,
        "mixed_precision": mixed,
        "xla": jit,
        "steps_timed": steps,
        "seconds": round(timed, 3),
        "images_per_s": round(steps * batch / timed, 1),
        "first_epoch_s": round(timer.seconds[0], 1),
    }


def bench_inference(model_dir: Path, batches: list[int], seconds: float) -> list[dict[str, Any]]:
    """Images/s of the SavedModel run as it is, per batch size."""
    from app.inference.model import EmbeddingModel

    model = EmbeddingModel(model_dir, engine="savedmodel")
    rng = np.random.default_rng(1)
    rows = []
    for b in batches:
        crops = rng.integers(0, 256, (b, 112, 112, 3), dtype=np.uint8)
        for _ in range(3):
            model.embed(crops)  # warm-up: graph and kernels for this shape
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 5:
            t = time.perf_counter()
            model.embed(crops)
            times.append(time.perf_counter() - t)
        p50 = float(np.median(times))
        rows.append(
            {
                "batch": b,
                "calls": len(times),
                "p50_ms": round(p50 * 1e3, 2),
                "images_per_s": round(b / p50, 1),
            }
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    train_rows = [
        {
            "recipe": r["recipe"],
            "backbone": f"{r['backbone']} ({r['parameters'] / 1e6:.1f} M)",
            "batch": r["batch"],
            "mixed precision": r["mixed_precision"],
            "XLA": r["xla"],
            "images/s": f"{r['images_per_s']:,}",
            "first epoch s (incl. compile)": r["first_epoch_s"],
        }
        for r in result["training"]
    ]
    infer_rows = [
        {
            "batch": r["batch"],
            "images/s": f"{r['images_per_s']:,}",
            "p50 ms per call": r["p50_ms"],
            "calls": r["calls"],
        }
        for r in result["inference"]
    ]
    lines = [
        "### GPU — training and SavedModel inference throughput",
        "",
        f"Machine: {machine_line(result['machine'])}",
        f"Command: `{result['command']}`",
        "",
        f"Training ({result['train_steps']} timed steps on synthetic crops, "
        f"{result['classes']} classes)",
        "",
        md_table(train_rows, list(train_rows[0])) if train_rows else "(none)",
        "",
        f"Inference: `{result['model_dir']}`, engine `savedmodel`",
        "",
        md_table(infer_rows, list(infer_rows[0])) if infer_rows else "(none)",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--recipes", nargs="*", default=None, help="training configs to time")
    ap.add_argument("--train-steps", type=int, default=50, help="steps per timed epoch")
    ap.add_argument("--train-batch", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--classes", type=int, default=TRAIN_CLASSES)
    ap.add_argument("--batches", default="1,32,256", help="inference batch sizes")
    ap.add_argument("--infer-seconds", type=float, default=10.0)
    ap.add_argument("--model-dir", type=Path, default=REPO / "model_store" / "faceid" / "2")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.recipes = args.recipes or ["scratch"]
        args.train_steps, args.train_batch, args.classes = 2, 8, 16
        args.batches, args.infer_seconds = "1,4", 0.2
    result: dict[str, Any] = {
        "command": "python -m bench.gpu " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
        "train_steps": args.train_steps,
        "classes": args.classes,
        "model_dir": str(args.model_dir),
        "training": [],
    }
    for name in _recipes(args.recipes):
        print(f"gpu: training throughput of {name} ...", file=sys.stderr, flush=True)
        result["training"].append(
            bench_training(name, args.train_steps, args.train_batch, args.classes)
        )
    print("gpu: SavedModel inference ...", file=sys.stderr, flush=True)
    batches = [int(b) for b in args.batches.split(",")]
    result["inference"] = bench_inference(args.model_dir, batches, args.infer_seconds)
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    write_results(out_dir, "gpu", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
