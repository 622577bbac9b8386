"""Fine-tuning controls: the head warm-up freezes the backbone, and the backbone gradient
factor is exactly a backbone learning-rate multiplier with SGD."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.backbones import build_backbone
from training.config import config_from_dict
from training.train import build_training_model

TINY = {"width": 0.25, "stages": [[2, 16, 1, 2]], "head_channels": 32}


def _setup():  # type: ignore[no-untyped-def]
    keras.utils.set_random_seed(5)
    cfg = config_from_dict({"model": {"backbone_kwargs": TINY}})
    backbone = build_backbone("mobilefacenet", **TINY)
    trainer, gate = build_training_model(backbone, 4, cfg)
    trainer.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = {
        "image": rng.uniform(0, 255, (8, 112, 112, 3)).astype("float32"),
        "label": np.arange(8, dtype="int32") % 4,
    }
    return backbone, trainer, gate, x


def _weights(model) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    return [np.array(w) for w in model.trainable_weights]


def test_gradient_factor_zero_freezes_backbone_but_trains_head() -> None:
    backbone, trainer, gate, x = _setup()
    head = trainer.get_layer("margin_head")
    b0, h0 = _weights(backbone), np.array(head.centres)
    gate.factor.assign(0.0)
    trainer.train_on_batch(x, x["label"])
    assert all(np.array_equal(a, b) for a, b in zip(b0, _weights(backbone), strict=True))
    assert not np.array_equal(h0, np.array(head.centres))
    gate.factor.assign(1.0)
    trainer.train_on_batch(x, x["label"])
    assert not all(np.array_equal(a, b) for a, b in zip(b0, _weights(backbone), strict=True))


def test_gradient_factor_scales_the_backbone_step() -> None:
    backbone, trainer, gate, x = _setup()
    start = _weights(backbone)
    head_start = np.array(trainer.get_layer("margin_head").centres)
    deltas = {}
    for factor in (1.0, 0.25):
        for w, v in zip(backbone.trainable_weights, start, strict=True):
            w.assign(v)
        trainer.get_layer("margin_head").centres.assign(head_start)
        gate.factor.assign(factor)
        trainer.train_on_batch(x, x["label"])
        deltas[factor] = np.concatenate(
            [
                (np.array(w) - v).ravel()
                for w, v in zip(backbone.trainable_weights, start, strict=True)
            ]
        )
    assert np.abs(deltas[1.0]).max() > 0
    np.testing.assert_allclose(deltas[0.25], 0.25 * deltas[1.0], rtol=1e-3, atol=1e-7)


def test_registry_rejects_unknown_and_mismatched_backbones() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet9000")
    with pytest.raises(ValueError, match="128-d"):
        build_backbone("facenet_irv1", embedding_dim=512)
    with pytest.raises(ValueError, match="no pretrained"):
        build_backbone("mobilefacenet", pretrained=True)
