"""Train an embedding backbone with an additive-margin head (Keras 3 on TensorFlow).

Model for training = backbone → gradient-scale gate → ArcFace/CosFace head, fed
``{"image": float32 [0,255], "label": int}``. The gate is the identity forwards and
multiplies the gradient flowing into the backbone: 0 during ``head_warmup_epochs`` (only
the randomly initialised margin head learns, so a pretrained backbone is not wrecked by
its first noisy gradients), then ``backbone_lr_mult`` (with SGD this is exactly a lower
learning rate for the backbone).

Run directory layout::

    config.yaml (the effective config)  split.json  classes.json (training identities)
    train.log.csv  tensorboard/  checkpoints/ (state each epoch, for --resume)
    best.weights.h5 + best.json   (backbone weights with the best validation accuracy)
    final.weights.h5  training_info.json (device, timing, data counts; goes into the card)

The callbacks are in :mod:`training.callbacks`.
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

from faces.cpu import usable_cores
from faces.model_contract import INPUT_SHAPE
from training.cluster import Cluster, cluster_from_env, write_dir
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


def select_strategy(logical_cpus: int | None = None, cluster: Cluster | None = None) -> Any:
    """MultiWorkerMirroredStrategy when ``TF_CONFIG`` describes a cluster; else
    MirroredStrategy over all GPUs (or the logical CPUs) when there are several."""
    import tensorflow as tf

    if cluster is not None and cluster.multi_worker:
        # created before anything else touches TensorFlow's runtime: it starts this
        # worker's gRPC server and the collective ops (ring all-reduce on CPUs, NCCL
        # when every worker has GPUs) with the other workers of TF_CONFIG
        return tf.distribute.MultiWorkerMirroredStrategy()
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


def build_training_model(
    backbone: Any, num_classes: int, cfg: ExperimentConfig, multi_worker: bool = False
) -> tuple[Any, Any]:
    """(trainer model {"image","label"} → logits, gradient-scale layer); ``multi_worker``:
    a :class:`training.multiworker_model.MultiWorkerTrainer`, for
    MultiWorkerMirroredStrategy."""
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
    model_class = keras.Model
    if multi_worker:
        from training.multiworker_model import MultiWorkerTrainer

        model_class = MultiWorkerTrainer
    return model_class({"image": image, "label": label}, logits, name="trainer"), gate


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


# --------------------------------------------------------------------------- driver
@dataclass
class TrainResult:
    run_dir: Path
    best: dict[str, Any]
    epochs_run: int
    seconds: float
    replicas: int
    device: str


@dataclass
class _Devices:
    strategy: Any
    gpu: bool
    mixed: bool
    jit: bool
    cluster: Cluster

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def batches(self, global_batch: int) -> dict[str, Any]:
        """The batch plan: ``train.batch_size`` is the global batch of one optimiser step,
        split evenly over the workers and, within a worker, over its replicas."""
        workers, replicas = self.cluster.workers, self.replicas
        if self.cluster.multi_worker and global_batch % replicas:
            raise ValueError(
                f"train.batch_size {global_batch} (the global batch) must split evenly over "
                f"{replicas} replicas on {workers} worker(s)"
            )
        return {
            "global_batch": global_batch,
            "workers": workers,
            "per_worker_batch": global_batch // workers,
            "replicas": replicas,
            "per_replica_batch": global_batch // replicas,
        }

    @property
    def name(self) -> str:
        return "GPU" if self.gpu else "CPU"

    @property
    def strategy_name(self) -> str:
        # tf.distribute.MultiWorkerMirroredStrategy's class is CollectiveAllReduceStrategy
        if self.cluster.multi_worker:
            return "MultiWorkerMirroredStrategy"
        return type(self.strategy).__name__


@dataclass
class _Data:
    identities: dict[str, Any]
    split: Any  # training.data.Split
    train: Any  # training.data.Arrays
    val: Any  # training.data.Arrays

    @property
    def num_classes(self) -> int:
        return len(self.train.keys)


def train(
    cfg: ExperimentConfig,
    cache_dir: Path,
    data_root: Path,
    run_dir: Path,
    resume: bool = False,
    logical_cpus: int | None = None,
    split_file: Path | None = None,
) -> TrainResult:
    """Train according to ``cfg``; everything is written under ``run_dir``.

    data → model → fit → record: the split and its crops, the trainer compiled under the
    distribution strategy, ``fit`` with the run's callbacks, then the final weights and
    ``training_info.json``.

    With ``TF_CONFIG`` set (see :mod:`training.cluster`) every worker of the cluster runs
    this same function: the strategy is MultiWorkerMirroredStrategy, each worker feeds its
    own shard of the training crops, and only the chief writes into ``run_dir`` (the
    other workers write into a temporary directory that is removed).
    """
    started = time.monotonic()
    cluster = cluster_from_env()
    if cluster.multi_worker and logical_cpus:
        raise ValueError("--logical-cpus is for one machine; with TF_CONFIG leave it out")
    run_dir = _open_run_dir(Path(run_dir), resume, create=cluster.is_chief)
    devices = _setup_devices(cfg, logical_cpus, cluster)

    with write_dir(run_dir, cluster) as out:
        data = _load_data(cfg, cache_dir, data_root, run_dir, out, resume, split_file)
        save_config(cfg, out / "config.yaml")
        (out / "classes.json").write_text(json.dumps(data.train.keys))

        steps = cfg.train.steps_per_epoch or max(
            1, math.ceil(len(data.train.labels) / cfg.train.batch_size)
        )
        batches = devices.batches(cfg.train.batch_size)
        log.info(
            "global batch %d = %d per worker × %d worker(s) (%d per replica); learning rate "
            "%g is the peak for that global batch (%s)",
            batches["global_batch"],
            batches["per_worker_batch"],
            batches["workers"],
            batches["per_replica_batch"],
            cfg.train.learning_rate,
            LR_RULE,
        )
        backbone, trainer, gate = _build_and_compile(cfg, devices, data.num_classes, steps)

        lfw = None
        if cfg.data.lfw_pairs and (data_root / cfg.data.lfw_pairs).exists():
            lfw = (data_root / cfg.data.lfw_pairs, data.identities)
        dirs = _Dirs(run=run_dir, out=out, chief=cluster.is_chief)
        history = trainer.fit(
            _train_dataset(cfg, data, devices),
            epochs=cfg.train.epochs,
            steps_per_epoch=steps,
            callbacks=_callbacks(cfg, dirs, resume, backbone, trainer, gate, data, lfw, steps),
            verbose=0,
            shuffle=False,
        )

        backbone.save_weights(str(out / "final.weights.h5"))
        result = _record(
            out, cfg, devices, data, len(history.epoch), time.monotonic() - started, batches
        )
    result.run_dir = run_dir
    return result


# how the learning rate relates to the global batch (logged, and kept in the model card)
LR_RULE = (
    "train.learning_rate belongs to the global batch train.batch_size whatever the number "
    "of workers, so N workers take the same optimiser steps as one; when changing the "
    "global batch, scale the learning rate linearly with it and keep the warm-up "
    "(Goyal et al. 2017)"
)


@dataclass
class _Dirs:
    run: Path  # the run directory: read on resume (split, the chief's backup)
    out: Path  # where this worker writes: the run directory on the chief, else a temp dir
    chief: bool


def _open_run_dir(run_dir: Path, resume: bool, create: bool = True) -> Path:
    """Create ``run_dir`` (when ``create``); refuse one that already holds a run unless
    resuming."""
    if (run_dir / "checkpoints").exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run: pass --resume or a new --run-dir")
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _setup_devices(
    cfg: ExperimentConfig, logical_cpus: int | None, cluster: Cluster | None = None
) -> _Devices:
    """Devices, distribution strategy, precision policy and seed for the run."""
    import keras

    cluster = cluster or Cluster()
    configure_devices(logical_cpus)
    strategy = select_strategy(logical_cpus, cluster)
    gpu = has_gpu()
    devices = _Devices(
        strategy=strategy,
        gpu=gpu,
        mixed=_flag(cfg.train.mixed_precision, gpu),
        jit=_flag(cfg.train.jit_compile, gpu),
        cluster=cluster,
    )
    if devices.mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(cfg.train.seed)
    log.info(
        "device %s, %d replica(s) (%s), mixed precision %s, XLA %s",
        devices.name,
        devices.replicas,
        devices.strategy_name,
        devices.mixed,
        devices.jit,
    )
    if cluster.multi_worker:
        log.info(
            "worker %s of %d (%s)",
            cluster.name,
            cluster.workers,
            "chief: writes the run directory" if cluster.is_chief else "writes a temp dir",
        )
    return devices


def _load_data(
    cfg: ExperimentConfig,
    cache_dir: Path,
    data_root: Path,
    run_dir: Path,
    out: Path,
    resume: bool,
    split_file: Path | None,
) -> _Data:
    """The cached crops, the split (given, resumed from ``run_dir`` or made; saved in
    ``out``) and the training and validation arrays."""
    from training.data import Split, gather, load_cache, make_split

    identities = load_cache(cache_dir, list(cfg.data.datasets))
    split_path = run_dir / "split.json"
    if split_file is not None:
        split = Split.load(split_file)
    elif resume and split_path.exists():
        split = Split.load(split_path)
    else:
        split = make_split(list(identities), cfg.data, data_root)
    split.save(out / "split.json")
    train_keys = split.train
    if cfg.data.max_train_identities:
        train_keys = train_keys[: cfg.data.max_train_identities]
    data = _Data(
        identities,
        split,
        train=gather(identities, train_keys, cfg.data.min_train_images),
        val=_cap_validation(gather(identities, split.val), cfg),
    )
    log.info(
        "split: %d train identities (%d crops), %d validation identities (%d crops used per epoch)",
        data.num_classes,
        len(data.train.labels),
        len(split.val),
        len(data.val.labels),
    )
    return data


def _cap_validation(val: Any, cfg: ExperimentConfig) -> Any:
    """At most ``train.val_max_images`` validation crops: whole identities, drawn with
    the split seed across all validation datasets."""
    if len(val.labels) <= cfg.train.val_max_images:
        return val
    order = np.random.default_rng(cfg.data.split_seed).permutation(len(val.keys))
    sizes = np.bincount(val.labels, minlength=len(val.keys))[order]
    n_keep = max(int(np.searchsorted(np.cumsum(sizes), cfg.train.val_max_images, "right")), 2)
    keep = np.isin(val.labels, order[:n_keep])
    val.crops, val.labels = val.crops[keep], val.labels[keep]
    return val


def _train_dataset(cfg: ExperimentConfig, data: _Data, devices: _Devices) -> Any:
    from training.data import distributed_train_dataset, train_dataset

    t = cfg.train
    if devices.cluster.multi_worker:
        return distributed_train_dataset(
            devices.strategy, data.train, t.batch_size, t.augment, t.shuffle_buffer, t.seed
        )
    return train_dataset(data.train, t.batch_size, t.augment, t.shuffle_buffer, t.seed)


def _build_and_compile(
    cfg: ExperimentConfig, devices: _Devices, num_classes: int, steps: int
) -> tuple[Any, Any, Any]:
    """(backbone, compiled trainer, gradient gate), built under the run's strategy."""
    import keras

    with devices.strategy.scope():
        backbone = build_backbone_from_config(cfg)
        trainer, gate = build_training_model(
            backbone, num_classes, cfg, multi_worker=devices.cluster.multi_worker
        )
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
            jit_compile=devices.jit,
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
    return backbone, trainer, gate


def _callbacks(
    cfg: ExperimentConfig,
    dirs: _Dirs,
    resume: bool,
    backbone: Any,
    trainer: Any,
    gate: Any,
    data: _Data,
    lfw: tuple[Path, dict] | None,
    steps: int,
) -> list[Any]:
    """Checkpoints, the warm-up schedules, validation, progress logs and the CSV log
    (and TensorBoard when it is installed).

    Every worker runs the same callbacks, writing into ``dirs.out``, and restores from the
    chief's backup in ``dirs.run``; validation (which picks ``best.weights.h5``) runs on the
    chief alone, since only its files are kept and it takes part in no collective op.
    """
    import keras

    from training.callbacks import (
        BackboneGate,
        MarginWarmup,
        SharedBackupAndRestore,
        StepLogger,
        Validation,
    )

    out = dirs.out
    callbacks = [
        SharedBackupAndRestore(out / "checkpoints", restore_dir=dirs.run / "checkpoints"),
        BackboneGate(gate, cfg.train.head_warmup_epochs, cfg.train.backbone_lr_mult),
        MarginWarmup(
            trainer.get_layer("margin_head"), cfg.loss.margin, cfg.loss.margin_warmup_epochs
        ),
    ]
    if dirs.chief:
        callbacks.append(Validation(backbone, out, data.val, cfg, lfw))
    callbacks += [
        StepLogger(steps, cfg.train.epochs, every=max(1, steps // 10)),
        keras.callbacks.CSVLogger(str(out / "train.log.csv"), append=resume),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.append(keras.callbacks.TensorBoard(str(out / "tensorboard"), write_graph=False))
    else:
        log.warning(
            "tensorboard is not installed: no TensorBoard logs (train.log.csv has the metrics)"
        )
    return callbacks


def _record(
    run_dir: Path,
    cfg: ExperimentConfig,
    devices: _Devices,
    data: _Data,
    epochs_run: int,
    seconds: float,
    batches: dict[str, Any] | None = None,
) -> TrainResult:
    """Write ``training_info.json`` and return the run's result (best epoch included)."""
    import keras
    import tensorflow as tf

    best_path = run_dir / "best.json"
    best = json.loads(best_path.read_text()) if best_path.exists() else {}
    info = {
        "device": devices.name,
        "replicas": devices.replicas,
        "strategy": devices.strategy_name,
        "mixed_precision": devices.mixed,
        "xla": devices.jit,
        "distribution": {
            **(batches or devices.batches(cfg.train.batch_size)),
            "input": (
                "each worker feeds its own shard of the training crops (every Nth crop)"
                if devices.cluster.multi_worker
                else "one input pipeline"
            ),
            "learning_rate": cfg.train.learning_rate,
            "learning_rate_rule": LR_RULE,
        },
        "seconds": round(seconds, 1),
        "epochs_run": epochs_run,
        "machine": _machine(),
        "train_identities": data.num_classes,
        "train_images": len(data.train.labels),
        "datasets": _dataset_counts(data.identities, data.train.keys, data.split.val),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    (run_dir / "training_info.json").write_text(json.dumps(info, indent=2))
    log.info("training done in %.1fs; best %s", seconds, best)
    return TrainResult(run_dir, best, epochs_run, seconds, devices.replicas, devices.name)


def _machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    return f"{platform.node()} ({cpu}, {usable_cores()} of {os.cpu_count()} cpus usable)"


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
