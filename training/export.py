"""Export an embedding backbone as the SavedModel the service loads.

``model_store/<name>/<version>/`` holds what ``faces.model_contract`` describes: the
SavedModel with its one serving signature and, beside it, ``model_card.json`` plus the
evaluation JSON/PNGs. The uint8 → float32 cast, the pixel normalisation and the L2
normalisation are inside the graph.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from faces.model_contract import (
    INPUT_NAME,
    INPUT_SHAPE,
    OUTPUT_NAME,
    SIGNATURE_NAME,
    Calibration,
    ModelCard,
    serving_signature,
    write_card,
)
from training.config import ExperimentConfig

log = logging.getLogger(__name__)

CITATIONS = {
    "lfw": (
        "G. B. Huang, M. Ramesh, T. Berg, E. Learned-Miller, 'Labeled Faces in the Wild: A "
        "Database for Studying Face Recognition in Unconstrained Environments', UMass Amherst "
        "TR 07-49, 2007; deep-funneled images: G. B. Huang, M. Mattar, H. Lee, "
        "E. Learned-Miller, 'Learning to Align from Scratch', NIPS 2012. Research benchmark."
    ),
    "celeba": (
        "Z. Liu, P. Luo, X. Wang, X. Tang, 'Deep Learning Face Attributes in the Wild', "
        "ICCV 2015. Released for non-commercial research."
    ),
    "orl": (
        "The ORL face database, Olivetti Research Laboratory, Cambridge, 1992-1994; "
        "F. Samaria, A. Harter, 'Parameterisation of a Stochastic Model for Human Face "
        "Identification', IEEE WACV 1994."
    ),
}


def export_savedmodel(backbone: Any, out_dir: Path, weights_dtype: str = "float32") -> Path:
    """Write ``backbone`` (float32 [0,255] → raw embedding) as a uint8-input SavedModel.

    ``weights_dtype="float16"`` stores the float weights at half precision (half the
    size on disk and in git) and casts them back to float32 inside the graph, so all
    arithmetic stays float32; embeddings then differ by about 1e-3 (cosine > 0.99999).
    """
    import tensorflow as tf

    if weights_dtype not in ("float32", "float16"):
        raise ValueError(f"weights_dtype must be float32 or float16, not {weights_dtype}")
    if weights_dtype == "float16":
        return _export_half(backbone, Path(out_dir))

    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        x = tf.cast(images, tf.float32)
        emb = tf.cast(backbone(x, training=False), tf.float32)
        return {OUTPUT_NAME: tf.math.l2_normalize(emb, axis=-1)}

    # A tf.Module that tracks exactly the tf.Variables the serving graph captures, rather
    # than keras.export.ExportArchive: in Keras 3.15 the archive stores every variable
    # twice (the Keras variables and the captured tf.Variables), doubling the size.
    module = tf.Module()
    module.serve = tf.function(
        serve, input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.uint8, name=INPUT_NAME)]
    )
    concrete = module.serve.get_concrete_function()
    module.captured_variables = list(concrete.variables)
    tf.saved_model.save(module, str(out_dir), signatures={SIGNATURE_NAME: concrete})
    return out_dir


def _export_half(backbone: Any, out_dir: Path) -> Path:
    import tensorflow as tf

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    def stored(v: Any) -> Any:
        value = v.value
        if value.dtype == tf.float32:
            value = tf.cast(value, tf.float16)
        return tf.Variable(value, trainable=False)

    module = tf.Module()
    module.trainable = [stored(v) for v in backbone.trainable_variables]
    module.non_trainable = [stored(v) for v in backbone.non_trainable_variables]

    def as_f32(vs: list[Any]) -> list[Any]:
        return [tf.cast(v, tf.float32) if v.dtype == tf.float16 else v for v in vs]

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        # stateless_call reads the half-precision copies, never the Keras variables, so
        # only the float16 weights end up in the SavedModel.
        emb, _ = backbone.stateless_call(
            as_f32(module.trainable),
            as_f32(module.non_trainable),
            tf.cast(images, tf.float32),
            training=False,
        )
        return {OUTPUT_NAME: tf.math.l2_normalize(tf.cast(emb, tf.float32), axis=-1)}

    module.serve = tf.function(
        serve, input_signature=[tf.TensorSpec([None, *INPUT_SHAPE], tf.uint8, name=INPUT_NAME)]
    )
    tf.saved_model.save(module, str(out_dir), signatures={SIGNATURE_NAME: module.serve})
    return out_dir


def check_export(backbone: Any, out_dir: Path, crops: np.ndarray) -> float:
    """Max |Δ| between the Keras model and the loaded SavedModel on ``crops``."""
    from training.evaluate import keras_embed_fn, savedmodel_embed_fn

    ref = keras_embed_fn(backbone)(crops)
    got = savedmodel_embed_fn(out_dir)(crops)
    return float(np.max(np.abs(ref - got)))


def write_model_card(
    out_dir: Path,
    *,
    name: str,
    version: str,
    embedding_dim: int,
    threshold: float,
    metrics: dict[str, Any],
    recipe: str,
    config: dict[str, Any],
    training_info: dict[str, Any] | None,
    pretrained: dict[str, Any] | None,
    evaluation_dir: Path | None,
    calibration: Calibration | None = None,
) -> ModelCard:
    """Write ``model_card.json`` (and copy the evaluation files) beside the SavedModel."""
    from faces import PREPROCESSING_VERSION

    datasets = dict(config.get("data", {}).get("datasets", {}))
    counts = (training_info or {}).get("datasets", {})
    split = {
        k: config.get("data", {}).get(k)
        for k in ("val_datasets", "lfw_pairs", "val_share", "split_seed")
    }
    card = ModelCard(
        name=name,
        version=str(version),
        embedding_dim=int(embedding_dim),
        preprocessing_version=PREPROCESSING_VERSION,
        threshold=threshold,
        signature=serving_signature(int(embedding_dim)),
        calibration=calibration,
        metrics=metrics,
        training_data={
            "datasets": {
                ds: {"path": path, "counts": counts.get(ds, {}), "citation": CITATIONS.get(ds)}
                for ds, path in datasets.items()
            },
            "split": "identity-disjoint; validation = " + json.dumps(split),
        },
        recipe=recipe,
        config=config,
        pretrained=pretrained,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        training=training_info,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    if evaluation_dir is not None and Path(evaluation_dir).is_dir():
        for f in sorted(Path(evaluation_dir).iterdir()):
            if f.suffix in (".png", ".json") and f.name != "model_card.json":
                shutil.copy2(f, out_dir / f.name)
    write_card(out_dir, card)
    return card


def add_calibration(model_dir: Path, calibration_dir: Path) -> ModelCard:
    """Store ``<calibration_dir>/calibration.json``'s fitted calibration in the card of
    ``model_dir`` (nothing else in the card changes) and copy its plots beside it."""
    from faces.model_contract import read_card

    result = json.loads((Path(calibration_dir) / "calibration.json").read_text())
    card = read_card(model_dir)
    card.calibration = Calibration.model_validate(result["calibration"])
    for name in result.get("plots", []):
        shutil.copy2(Path(calibration_dir) / name, Path(model_dir) / name)
    write_card(model_dir, card)
    return card


class ExportMismatchError(RuntimeError):
    """The exported SavedModel does not reproduce the Keras model's embeddings."""


#: Largest |Keras − SavedModel| an export may show on the probe crops, per weight dtype.
EXPORT_TOLERANCE = {"float32": 1e-4, "float16": 5e-3}

EvaluateFn = Callable[[Callable[[np.ndarray], np.ndarray], Path], dict[str, Any]]


def export_model(
    backbone: Any,
    out_dir: Path,
    *,
    cfg: ExperimentConfig,
    name: str,
    version: str,
    evaluate: EvaluateFn,
    weights_dtype: str = "float32",
    run_dir: Path | None = None,
    evaluation_dir: Path | None = None,
    untrained: bool = False,
) -> ModelCard:
    """Write ``out_dir`` (``model_store/<name>/<version>/``) for the service: the SavedModel,
    checked against the Keras model, and its model card with the evaluation it ships.

    ``run_dir``: the training run the weights come from (its ``training_info.json`` and
    ``best.json`` go into the card; its ``evaluation/`` is the default ``evaluation_dir``).
    The evaluation is reused when ``evaluation_dir/evaluation.json`` exists and the weights
    are stored as float32; otherwise ``evaluate(embed_fn, out_dir)`` evaluates the exported
    SavedModel itself (the shipped numbers must be those of the stored weights).
    """
    from training.evaluate import savedmodel_embed_fn, summary

    out_dir = Path(out_dir)
    diff = _export_checked(backbone, out_dir, weights_dtype)

    if evaluation_dir is None and run_dir is not None:
        evaluation_dir = Path(run_dir) / "evaluation"
    if weights_dtype != "float32":
        evaluation_dir = None
    if evaluation_dir is not None and (evaluation_dir / "evaluation.json").exists():
        result = json.loads((evaluation_dir / "evaluation.json").read_text())
    else:
        log.info("no evaluation found: evaluating the exported SavedModel")
        result = evaluate(savedmodel_embed_fn(out_dir, cfg.eval.batch_size), out_dir)
        evaluation_dir = None  # already written beside the model

    return write_model_card(
        out_dir,
        name=name,
        version=version,
        embedding_dim=int(backbone.output_shape[-1]),
        threshold=result["threshold"]["cosine"],
        metrics={
            "summary": summary(result),
            "evaluation": "evaluation.json",
            "export_max_abs_diff": diff,
            "weights_dtype": weights_dtype,
        },
        recipe=cfg.recipe + (" (untrained)" if untrained else ""),
        config=cfg.to_dict(),
        training_info=_training_info(run_dir),
        pretrained=_pretrained(cfg),
        evaluation_dir=evaluation_dir,
    )


def _export_checked(backbone: Any, out_dir: Path, weights_dtype: str) -> float:
    """Export, then compare the SavedModel with the Keras model on random crops."""
    t0 = time.monotonic()
    export_savedmodel(backbone, out_dir, weights_dtype)
    probe = np.random.default_rng(0).integers(0, 256, size=(8, *INPUT_SHAPE), dtype=np.uint8)
    diff = check_export(backbone, out_dir, probe)
    log.info(
        "exported %s in %.1fs; max |keras - savedmodel| = %.2e",
        out_dir,
        time.monotonic() - t0,
        diff,
    )
    if diff > EXPORT_TOLERANCE[weights_dtype]:
        raise ExportMismatchError(
            f"exported model disagrees with the Keras model (max diff {diff:.2e})"
        )
    return diff


def _training_info(run_dir: Path | None) -> dict[str, Any] | None:
    """The run's ``training_info.json`` with its best epoch, if the run recorded one."""
    if run_dir is None or not (Path(run_dir) / "training_info.json").exists():
        return None
    info: dict[str, Any] = json.loads((Path(run_dir) / "training_info.json").read_text())
    if (Path(run_dir) / "best.json").exists():
        info["best_epoch"] = json.loads((Path(run_dir) / "best.json").read_text())
    return info


def _pretrained(cfg: ExperimentConfig) -> dict[str, Any] | None:
    """Where a pretrained backbone's weights came from (None when trained from scratch)."""
    if not cfg.model.pretrained:
        return None
    from training.backbones import pretrained_provenance

    return {"backbone": cfg.model.backbone, **(pretrained_provenance(cfg.model.backbone) or {})}
