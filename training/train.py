"""Train an embedding backbone with an additive-margin head (Keras 3 on TensorFlow).

Model for training = backbone → gradient-scale gate → ArcFace/CosFace head, fed
``{"image": float32 [0,255], "label": int}``. The gate is the identity forwards and
multiplies the gradient flowing into the backbone: 0 during ``head_warmup_epochs`` (only
the randomly initialised margin head learns, so a pretrained backbone is not wrecked by
its first noisy gradients), then ``backbone_lr_mult`` (with SGD this is exactly a lower
learning rate for the backbone).

Run directory layout::

    config.yaml  split.json  train.log.csv  tensorboard/  checkpoints/ (state each epoch)
    best.weights.h5 + best.json   (backbone weights with the best validation accuracy)
    final.weights.h5
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faces.model_contract import INPUT_SHAPE
from training.config import ExperimentConfig, save_config

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- devices
def configure_devices(logical_cpus: int | None = None) -> None:
    """Split the CPU into ``logical_cpus`` logical devices (before TF touches devices)."""
    import tensorflow as tf

    if logical_cpus and logical_cpus > 1:
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(logical_cpus)]
        )


def select_strategy(logical_cpus: int | None = None) -> Any:
    """MirroredStrategy over all GPUs (or the logical CPUs) when there are several."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    if logical_cpus and logical_cpus > 1:
        cpus = tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([c.name for c in cpus[:logical_cpus]])
    return tf.distribute.get_strategy()


def has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _flag(value: str, gpu: bool) -> bool:
    return gpu if value == "auto" else value == "on"


# --------------------------------------------------------------------------- model
def _gradient_scale_layer() -> Any:
    import keras
    import tensorflow as tf

    class GradientScale(keras.layers.Layer):
        """Identity forwards; multiplies the incoming gradient by ``factor`` backwards."""

        def build(self, input_shape: Any) -> None:
            self.factor = self.add_weight(
                name="factor", shape=(), initializer="ones", trainable=False
            )

        def call(self, x: Any) -> Any:
            factor = tf.cast(tf.convert_to_tensor(self.factor), x.dtype)

            @tf.custom_gradient
            def _gate(t: tf.Tensor) -> Any:
                def grad(dy: tf.Tensor) -> tf.Tensor:
                    return dy * factor

                return tf.identity(t), grad

            return _gate(x)

    return GradientScale


def build_backbone_from_config(cfg: ExperimentConfig, pretrained: bool | None = None) -> Any:
    from training.backbones import build_backbone

    return build_backbone(
        cfg.model.backbone,
        embedding_dim=cfg.model.embedding_dim,
        pretrained=cfg.model.pretrained if pretrained is None else pretrained,
        **cfg.model.backbone_kwargs,
    )


def build_training_model(backbone: Any, num_classes: int, cfg: ExperimentConfig) -> tuple[Any, Any]:
    """(trainer model {"image","label"} → logits, gradient-scale layer)."""
    import keras

    from training.losses import MarginHead

    if cfg.model.freeze_bn:
        for layer in backbone._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False  # Keras 3: a frozen BN runs in inference mode
    image = keras.Input(INPUT_SHAPE, dtype="float32", name="image")
    label = keras.Input((), dtype="int32", name="label")
    gate = _gradient_scale_layer()(name="backbone_gradient_scale", dtype="float32")
    emb = gate(keras.ops.cast(backbone(image), "float32"))
    logits = MarginHead(
        num_classes,
        kind=cfg.loss.kind,
        scale=cfg.loss.scale,
        margin=cfg.loss.margin,
        easy_margin=cfg.loss.easy_margin,
        name="margin_head",
    )([emb, label])
    return keras.Model({"image": image, "label": label}, logits, name="trainer"), gate


def build_embedding_model(backbone: Any) -> Any:
    """Backbone + L2 normalisation: float32 [0,255] pixels → unit-norm embedding."""
    import keras

    image = keras.Input(INPUT_SHAPE, dtype="float32", name="image")
    emb = keras.ops.cast(backbone(image), "float32")
    emb = keras.layers.UnitNormalization(axis=-1, name="l2_normalise", dtype="float32")(emb)
    return keras.Model(image, emb, name="embedder")


def make_optimizer(cfg: ExperimentConfig, steps_per_epoch: int) -> Any:
    import keras

    t = cfg.train
    if t.optimizer != "sgd":
        raise ValueError("only optimizer 'sgd' is supported (backbone_lr_mult scales gradients)")
    total = max(1, t.epochs * steps_per_epoch)
    warmup = min(round(t.warmup_epochs * steps_per_epoch), total - 1)
    if warmup > 0:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=t.learning_rate * 1e-3,
            decay_steps=total - warmup,
            alpha=1e-3,
            warmup_target=t.learning_rate,
            warmup_steps=warmup,
        )
    else:
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=t.learning_rate, decay_steps=total, alpha=1e-3
        )
    return keras.optimizers.SGD(
        learning_rate=schedule,
        momentum=t.momentum,
        nesterov=False,
        weight_decay=t.weight_decay or None,
    )


# --------------------------------------------------------------------------- callbacks
def _callbacks_module() -> Any:
    import keras

    class BackboneGate(keras.callbacks.Callback):
        """Freeze the backbone (gradient × 0) for the head warm-up, then × mult."""

        def __init__(self, gate: Any, warmup_epochs: int, mult: float) -> None:
            super().__init__()
            self.gate, self.warmup_epochs, self.mult = gate, warmup_epochs, mult

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            factor = 0.0 if epoch < self.warmup_epochs else self.mult
            self.gate.factor.assign(factor)
            log.info("epoch %d: backbone gradient factor %.3g", epoch + 1, factor)

    class MarginWarmup(keras.callbacks.Callback):
        """Margin = m · epoch / warmup_epochs during the first epochs, then m."""

        def __init__(self, head: Any, margin: float, warmup_epochs: int) -> None:
            super().__init__()
            self.head, self.margin, self.warmup_epochs = head, margin, warmup_epochs

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            m = (
                self.margin * min(1.0, epoch / self.warmup_epochs)
                if self.warmup_epochs
                else self.margin
            )
            self.head.current_margin.assign(m)
            if self.warmup_epochs and epoch <= self.warmup_epochs:
                log.info("epoch %d: margin %.3f", epoch + 1, m)

    class StepLogger(keras.callbacks.Callback):
        def __init__(self, steps_per_epoch: int, epochs: int, every: int) -> None:
            super().__init__()
            self.steps, self.epochs, self.every = steps_per_epoch, epochs, max(1, every)
            self._t0 = time.monotonic()
            self._epoch = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._epoch, self._t0 = epoch, time.monotonic()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if (batch + 1) % self.every == 0 or batch + 1 == self.steps:
                logs = logs or {}
                rate = (batch + 1) / max(time.monotonic() - self._t0, 1e-9)
                log.info(
                    "epoch %d/%d step %d/%d loss %.4f acc %.4f lr %.5f (%.2f steps/s)",
                    self._epoch + 1,
                    self.epochs,
                    batch + 1,
                    self.steps,
                    float(logs.get("loss", float("nan"))),
                    float(logs.get("sparse_categorical_accuracy", float("nan"))),
                    float(np.asarray(self.model.optimizer.learning_rate)),
                    rate,
                )

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            shown = {k: round(float(v), 5) for k, v in (logs or {}).items()}
            log.info(
                "epoch %d/%d done in %.1fs: %s",
                epoch + 1,
                self.epochs,
                time.monotonic() - self._t0,
                shown,
            )

    class Validation(keras.callbacks.Callback):
        """Verification accuracy on the identity-disjoint validation split each epoch;
        keeps the backbone weights of the best epoch."""

        def __init__(
            self,
            backbone: Any,
            run_dir: Path,
            val: Any,
            cfg: ExperimentConfig,
            lfw: tuple[Path, dict] | None,
        ) -> None:
            super().__init__()
            self.backbone, self.run_dir, self.val, self.cfg, self.lfw = (
                backbone,
                run_dir,
                val,
                cfg,
                lfw,
            )
            best = run_dir / "best.json"
            self.best = json.loads(best.read_text())["val_accuracy"] if best.exists() else -1.0

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            from training.evaluate import (
                keras_embed_fn,
                lfw_pair_scores,
                pair_verification,
                verification_metrics,
            )

            t0 = time.monotonic()
            embed = keras_embed_fn(self.backbone, batch_size=self.cfg.eval.batch_size)
            emb = embed(self.val.crops)
            n = self.cfg.train.val_max_pairs
            metrics, _, _ = pair_verification(emb, self.val.labels, n, n, self.cfg.eval.folds)
            result = {
                "val_accuracy": metrics["accuracy"],
                "val_auc": metrics["auc"],
                "val_tar_at_far_1e-03": metrics["tar_at_far_1e-03"],
            }
            if self.lfw is not None:
                scores, same, missing = lfw_pair_scores(
                    self.lfw[0], self.lfw[1], embed, self.cfg.data.lfw_dataset
                )
                lfw = verification_metrics(scores, same, self.cfg.eval.folds)
                result["val_lfw_accuracy"] = lfw["accuracy"]
                result["val_lfw_missing_pairs"] = missing
            if logs is not None:
                logs.update(result)
            improved = result["val_accuracy"] > self.best
            if improved:
                self.best = result["val_accuracy"]
                self.backbone.save_weights(str(self.run_dir / "best.weights.h5"))
                (self.run_dir / "best.json").write_text(
                    json.dumps({"epoch": epoch + 1, **result}, indent=2)
                )
            log.info(
                "epoch %d validation (%.1fs): %s%s",
                epoch + 1,
                time.monotonic() - t0,
                {k: round(float(v), 5) for k, v in result.items()},
                " (best so far, saved)" if improved else "",
            )

    return BackboneGate, MarginWarmup, StepLogger, Validation


# --------------------------------------------------------------------------- driver
@dataclass
class TrainResult:
    run_dir: Path
    best: dict[str, Any]
    epochs_run: int
    seconds: float
    replicas: int
    device: str


def train(
    cfg: ExperimentConfig,
    cache_dir: Path,
    data_root: Path,
    run_dir: Path,
    resume: bool = False,
    logical_cpus: int | None = None,
    split_file: Path | None = None,
) -> TrainResult:
    """Train according to ``cfg``; everything is written under ``run_dir``."""
    import keras
    import tensorflow as tf

    from training.data import Split, gather, load_cache, make_split, train_dataset

    started = time.monotonic()
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    if ckpt_dir.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run: pass --resume or a new --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)

    configure_devices(logical_cpus)
    gpu = has_gpu()
    strategy = select_strategy(logical_cpus)
    replicas = int(strategy.num_replicas_in_sync)
    mixed = _flag(cfg.train.mixed_precision, gpu)
    jit = _flag(cfg.train.jit_compile, gpu)
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(cfg.train.seed)
    device = "GPU" if gpu else "CPU"
    log.info(
        "device %s, %d replica(s) (%s), mixed precision %s, XLA %s",
        device,
        replicas,
        type(strategy).__name__,
        mixed,
        jit,
    )

    identities = load_cache(cache_dir, list(cfg.data.datasets))
    split_path = run_dir / "split.json"
    if split_file is not None:
        split = Split.load(split_file)
    elif resume and split_path.exists():
        split = Split.load(split_path)
    else:
        split = make_split(list(identities), cfg.data, data_root)
    split.save(split_path)
    train_keys = split.train
    if cfg.data.max_train_identities:
        train_keys = train_keys[: cfg.data.max_train_identities]
    train_arr = gather(identities, train_keys, cfg.data.min_train_images)
    val_arr = gather(identities, split.val)
    if len(val_arr.labels) > cfg.train.val_max_images:
        # seeded cap: whole identities drawn across all validation datasets
        order = np.random.default_rng(cfg.data.split_seed).permutation(len(val_arr.keys))
        sizes = np.bincount(val_arr.labels, minlength=len(val_arr.keys))[order]
        n_keep = max(int(np.searchsorted(np.cumsum(sizes), cfg.train.val_max_images, "right")), 2)
        keep = np.isin(val_arr.labels, order[:n_keep])
        val_arr.crops, val_arr.labels = val_arr.crops[keep], val_arr.labels[keep]
    num_classes = len(train_arr.keys)
    log.info(
        "split: %d train identities (%d crops), %d validation identities (%d crops used per epoch)",
        num_classes,
        len(train_arr.labels),
        len(split.val),
        len(val_arr.labels),
    )
    save_config(cfg, run_dir / "config.yaml")
    (run_dir / "classes.json").write_text(json.dumps(train_arr.keys))

    batch = cfg.train.batch_size
    steps = cfg.train.steps_per_epoch or max(1, math.ceil(len(train_arr.labels) / batch))
    ds = train_dataset(
        train_arr, batch, cfg.train.augment, cfg.train.shuffle_buffer, cfg.train.seed
    )

    with strategy.scope():
        backbone = build_backbone_from_config(cfg)
        trainer, gate = build_training_model(backbone, num_classes, cfg)
        optimizer = make_optimizer(cfg, steps)
        if not cfg.train.backbone_weight_decay:
            optimizer.exclude_from_weight_decay(var_list=backbone.trainable_variables)
        elif cfg.train.head_warmup_epochs and cfg.train.weight_decay:
            log.warning(
                "head_warmup_epochs=%d with backbone weight decay: the 'frozen' backbone "
                "still decays; set train.backbone_weight_decay: false to keep it intact",
                cfg.train.head_warmup_epochs,
            )
        trainer.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["sparse_categorical_accuracy"],
            jit_compile=jit,
        )
    log.info(
        "model: backbone %s (%d parameters), %d classes, %s head, %d steps/epoch × %d epochs",
        cfg.model.backbone,
        backbone.count_params(),
        num_classes,
        cfg.loss.kind,
        steps,
        cfg.train.epochs,
    )

    lfw = None
    if cfg.data.lfw_pairs and (data_root / cfg.data.lfw_pairs).exists():
        lfw = (data_root / cfg.data.lfw_pairs, identities)
    gate_cb, margin_cb, step_cb, val_cb = _callbacks_module()
    callbacks = [
        keras.callbacks.BackupAndRestore(str(ckpt_dir), save_freq="epoch", delete_checkpoint=False),
        gate_cb(gate, cfg.train.head_warmup_epochs, cfg.train.backbone_lr_mult),
        margin_cb(trainer.get_layer("margin_head"), cfg.loss.margin, cfg.loss.margin_warmup_epochs),
        val_cb(backbone, run_dir, val_arr, cfg, lfw),
        step_cb(steps, cfg.train.epochs, every=max(1, steps // 10)),
        keras.callbacks.CSVLogger(str(run_dir / "train.log.csv"), append=resume),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False)
        )
    else:
        log.warning(
            "tensorboard is not installed: no TensorBoard logs (train.log.csv has the metrics)"
        )
    history = trainer.fit(
        ds,
        epochs=cfg.train.epochs,
        steps_per_epoch=steps,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,
    )
    backbone.save_weights(str(run_dir / "final.weights.h5"))
    seconds = time.monotonic() - started
    best_path = run_dir / "best.json"
    best = json.loads(best_path.read_text()) if best_path.exists() else {}
    info = {
        "device": device,
        "replicas": replicas,
        "strategy": type(strategy).__name__,
        "mixed_precision": mixed,
        "xla": jit,
        "seconds": round(seconds, 1),
        "epochs_run": len(history.epoch),
        "machine": _machine(),
        "train_identities": num_classes,
        "train_images": len(train_arr.labels),
        "datasets": _dataset_counts(identities, train_arr.keys, split.val),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    (run_dir / "training_info.json").write_text(json.dumps(info, indent=2))
    log.info("training done in %.1fs; best %s", seconds, best)
    return TrainResult(run_dir, best, len(history.epoch), seconds, replicas, device)


def _machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    return f"{platform.node()} ({cpu}, {os.cpu_count()} cpus)"


def _dataset_counts(identities: dict, train_keys: list[str], val_keys: list[str]) -> dict:
    out: dict[str, dict[str, int]] = {}
    for part, keys in (("train", train_keys), ("val", val_keys)):
        for key in keys:
            if key not in identities:
                continue
            d = out.setdefault(key.split("/", 1)[0], {})
            d[f"{part}_identities"] = d.get(f"{part}_identities", 0) + 1
            d[f"{part}_images"] = d.get(f"{part}_images", 0) + len(identities[key].crops)
    return out
