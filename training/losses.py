"""Additive margin heads (ArcFace, CosFace) as Keras layers.

The head holds one unit-norm class centre per training identity; given embeddings and
labels it returns scaled logits for softmax cross-entropy:

- ArcFace (Deng et al., 2019): target logit s·cos(θ + m), non-target s·cos θ. Where θ + m
  would pass π (cos θ ≤ cos(π − m)) cos(θ + m) is no longer monotonic, so the target logit
  falls back to s·(cos θ − m·sin m) (the insightface "threshold" handling), or, with
  ``easy_margin``, the margin is only applied where cos θ > 0.
- CosFace (Wang et al., 2018): target logit s·(cos θ − m).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

_EPS = 1e-7


class MarginHead(keras.layers.Layer):
    """Call on ``[embeddings, labels]`` → scaled logits (float32) with the margin applied."""

    def __init__(
        self,
        num_classes: int,
        kind: str = "arcface",
        scale: float = 64.0,
        margin: float = 0.5,
        easy_margin: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if kind not in ("arcface", "cosface"):
            raise ValueError(f"kind must be arcface or cosface, not {kind!r}")
        self.num_classes = int(num_classes)
        self.kind = kind
        self.scale = float(scale)
        self.margin = float(margin)
        self.easy_margin = bool(easy_margin)

    def build(self, input_shape: Any) -> None:
        dim = int(input_shape[0][-1])
        self.centres = self.add_weight(
            name="centres",
            shape=(dim, self.num_classes),
            initializer=keras.initializers.GlorotNormal(),
            trainable=True,
        )
        # the margin in use (a variable so that a schedule can ramp it up from 0)
        self.current_margin = self.add_weight(
            name="current_margin",
            shape=(),
            initializer=keras.initializers.Constant(self.margin),
            trainable=False,
        )

    def cosine(self, embeddings: Any) -> Any:
        x = ops.cast(embeddings, "float32")
        x = x / ops.sqrt(ops.maximum(ops.sum(x * x, axis=-1, keepdims=True), 1e-12))
        w = self.centres / ops.sqrt(
            ops.maximum(ops.sum(self.centres * self.centres, axis=0, keepdims=True), 1e-12)
        )
        return ops.clip(ops.matmul(x, w), -1.0 + _EPS, 1.0 - _EPS)

    def call(self, inputs: Any) -> Any:
        embeddings, labels = inputs
        cos = self.cosine(embeddings)
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        one_hot = ops.one_hot(labels, self.num_classes, dtype="float32")
        m = ops.convert_to_tensor(self.current_margin, "float32")
        if self.kind == "cosface":
            target = cos - m
        else:
            sin = ops.sqrt(ops.clip(1.0 - cos * cos, 0.0, 1.0))
            phi = cos * ops.cos(m) - sin * ops.sin(m)
            if self.easy_margin:
                target = ops.where(cos > 0.0, phi, cos)
            else:
                threshold = ops.cos(math.pi - m)
                target = ops.where(cos > threshold, phi, cos - ops.sin(math.pi - m) * m)
        logits = one_hot * target + (1.0 - one_hot) * cos
        return logits * self.scale

    def compute_output_shape(self, input_shape: Any) -> tuple[Any, int]:
        return (input_shape[0][0], self.num_classes)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "kind": self.kind,
            "scale": self.scale,
            "margin": self.margin,
            "easy_margin": self.easy_margin,
        }
