"""Keras callbacks of a training run (:func:`training.train.train` wires them up).

- :class:`SharedBackupAndRestore`: Keras' BackupAndRestore that restores every worker of
  a multi-worker job from the chief's backup.
- :class:`BackboneGate`: backbone gradient × 0 during the head warm-up, then × mult.
- :class:`MarginWarmup`: the additive margin ramps linearly from 0 over the first epochs.
- :class:`StepLogger`: progress lines (loss, accuracy, learning rate, steps/s).
- :class:`Validation`: verification accuracy on the identity-disjoint validation split
  after each epoch; keeps the backbone weights of the best epoch.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from training.config import ExperimentConfig

log = logging.getLogger(__name__)


class SharedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Back up the training state each epoch into ``backup_dir``; restore from
    ``restore_dir`` (the chief's backup) when training starts.

    Keras 3's BackupAndRestore reads and writes one directory. In a multi-worker job
    every worker must restore the same state, the chief's, while only the chief's backup
    is kept (the others write theirs into a directory that is removed), as TensorFlow's
    multi-worker guide describes. On one machine both directories are the run's
    ``checkpoints/``.
    """

    _weights_path: str  # set by keras' BackupAndRestore
    _training_metadata_path: str

    def __init__(self, backup_dir: Path, restore_dir: Path) -> None:
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=False)
        self.restore_dir = Path(restore_dir)

    def on_train_begin(self, logs: dict | None = None) -> None:
        written = self._weights_path, self._training_metadata_path
        self._weights_path = str(self.restore_dir / Path(written[0]).name)
        self._training_metadata_path = str(self.restore_dir / Path(written[1]).name)
        try:
            super().on_train_begin(logs)
        finally:
            self._weights_path, self._training_metadata_path = written
        epoch = int(getattr(self.model, "_initial_epoch", None) or 0)
        if epoch:
            log.info(
                "restored the backup in %s: %d epoch(s) done, continuing at epoch %d",
                self.restore_dir,
                epoch,
                epoch + 1,
            )


class BackboneGate(keras.callbacks.Callback):
    """Freeze the backbone (gradient × 0) for the head warm-up, then × ``mult``."""

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
    """A progress line every ``every`` steps and one per finished epoch."""

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
    keeps the backbone weights of the best epoch (``best.weights.h5`` + ``best.json``)."""

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
        from training.evaluate import keras_embed_fn

        t0 = time.monotonic()
        embed = keras_embed_fn(self.backbone, batch_size=self.cfg.eval.batch_size)
        result = self._metrics(embed)
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

    def _metrics(self, embed: Any) -> dict[str, float]:
        from training.evaluate import lfw_pair_scores, pair_verification, verification_metrics

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
        return result
