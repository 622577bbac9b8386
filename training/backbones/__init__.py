"""Backbone registry: name → builder of a Keras model mapping float32 [0, 255] pixels
(N×112×112×3) to a raw embedding (normalisation to the network's range is inside)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

from faces.model_contract import ALIGNED_SIZE
from training.backbones.mobilefacenet import build_mobilefacenet


def _build_mobilefacenet(
    embedding_dim: int = 128,
    pretrained: bool = False,
    input_size: int = ALIGNED_SIZE,
    **kwargs: Any,
) -> keras.Model:
    if pretrained:
        raise ValueError("mobilefacenet has no pretrained weights; use backbone facenet_irv1")
    return build_mobilefacenet(input_size=input_size, embedding_dim=embedding_dim, **kwargs)


def _build_facenet_irv1(
    embedding_dim: int = 128,
    pretrained: bool = True,
    input_size: int = ALIGNED_SIZE,
    **kwargs: Any,
) -> keras.Model:
    if embedding_dim != 128:
        raise ValueError("facenet_irv1 produces 128-d embeddings")
    if kwargs:
        raise ValueError(f"facenet_irv1 takes no extra arguments, got {sorted(kwargs)}")
    from training.backbones.facenet import build_facenet  # lazy: reads a 92 MB .h5

    return build_facenet(input_size=input_size, pretrained=pretrained)


BACKBONES: dict[str, Callable[..., keras.Model]] = {
    "mobilefacenet": _build_mobilefacenet,
    "facenet_irv1": _build_facenet_irv1,
}


def pretrained_provenance(name: str) -> dict[str, Any] | None:
    """Provenance and licence of a backbone's pretrained weights (for the model card)."""
    if name == "facenet_irv1":
        from training.backbones.facenet import PROVENANCE

        return dict(PROVENANCE)
    return None


def build_backbone(
    name: str, embedding_dim: int = 128, pretrained: bool = False, **kwargs: Any
) -> keras.Model:
    """Build a registered backbone by name."""
    try:
        builder = BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}") from None
    return builder(embedding_dim=embedding_dim, pretrained=pretrained, **kwargs)
