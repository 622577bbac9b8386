"""The trainer model class used under MultiWorkerMirroredStrategy (Keras 3, TF backend).

Keras 3's ``fit`` runs under ``tf.distribute.MirroredStrategy`` but trips twice over
``MultiWorkerMirroredStrategy`` (keras-team/keras#20585, tensorflow/tensorflow#72388;
TensorFlow's multi-worker Keras tutorial fails the same way with Keras 3):

1. before the first step it reduces one distributed input batch across workers to build
   the model symbolically, and the cross-worker reduce cannot take a nested batch
   ("Attempt to convert a value ({'image': PerReplica ...}) ... to a Tensor");
2. after every step it averages each replica's logs with ``strategy.reduce("MEAN", v,
   axis=0)``, which fails on the scalar loss and metrics ("Invalid reduction dimension 0
   for input with 0 dimensions").

:class:`MultiWorkerTrainer` is a functional ``keras.Model`` that avoids both: it builds
from this worker's own share of the batch (only shapes and dtypes matter) and hands its
scalar logs over as one-element vectors, so the reduce along axis 0 is the mean over all
replicas of all workers. Everything else (gradients summed over all replicas by the
optimizer, the loss scaled by the global replica count) is Keras' own.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import tree


class MultiWorkerTrainer(keras.Model):
    """A functional model (``MultiWorkerTrainer(inputs, outputs)``) that trains under
    MultiWorkerMirroredStrategy with Keras 3's ``fit``."""

    def train_step(self, data: Any) -> dict[str, Any]:
        logs = super().train_step(data)
        return {k: tf.reshape(v, [1]) if _is_scalar(v) else v for k, v in logs.items()}

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        strategy = self.distribute_strategy

        def local(value: Any) -> Any:
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.experimental_local_results(value)[0]
            return value

        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(local, next(it))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)


def _is_scalar(value: Any) -> bool:
    return hasattr(value, "shape") and len(value.shape) == 0
