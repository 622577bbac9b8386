"""The ArcFace/CosFace heads match a NumPy reference written from the angles."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from training.losses import MarginHead

EPS = 1e-7  # MarginHead clips cos θ to [-1 + ε, 1 − ε]


# The reference the head is checked against (test oracle, not shipped code).
def margin_logits_reference(
    embeddings: np.ndarray,
    centres: np.ndarray,
    labels: np.ndarray,
    kind: str = "arcface",
    scale: float = 64.0,
    margin: float = 0.5,
    easy_margin: bool = False,
) -> np.ndarray:
    """NumPy reference of :class:`MarginHead` written from the angles (θ) directly."""
    x = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    w = centres / np.linalg.norm(centres, axis=0, keepdims=True)
    cos = np.clip(x @ w, -1.0 + EPS, 1.0 - EPS)
    logits = cos.copy()
    for i, y in enumerate(labels):
        c = cos[i, y]
        theta = math.acos(c)
        if kind == "cosface":
            t = c - margin
        elif easy_margin:
            t = math.cos(theta + margin) if c > 0 else c
        elif theta + margin <= math.pi:
            t = math.cos(theta + margin)
        else:
            t = c - math.sin(math.pi - margin) * margin
        logits[i, y] = t
    return logits * scale


def margin_loss_reference(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean softmax cross-entropy of scaled logits (numerically stable)."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_p[np.arange(len(labels)), labels].mean())


def _case(seed: int, n: int = 16, dim: int = 8, classes: int = 5):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    centres = rng.normal(size=(dim, classes)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    # make a few samples point almost opposite their class centre (θ + m > π branch)
    for i in range(3):
        emb[i] = -centres[:, labels[i]] + 0.01 * rng.normal(size=dim)
    # and a few close to their centre (θ small)
    for i in range(3, 6):
        emb[i] = centres[:, labels[i]] + 0.05 * rng.normal(size=dim)
    return emb, centres, labels


@pytest.mark.parametrize(
    ("kind", "easy", "scale", "margin"),
    [("arcface", False, 64.0, 0.5), ("arcface", True, 64.0, 0.5), ("cosface", False, 30.0, 0.35)],
)
def test_head_logits_and_loss_match_numpy(
    kind: str, easy: bool, scale: float, margin: float
) -> None:
    emb, centres, labels = _case(0)
    head = MarginHead(centres.shape[1], kind=kind, scale=scale, margin=margin, easy_margin=easy)
    head.build([emb.shape, labels.shape])
    head.centres.assign(centres)
    got = np.asarray(head([emb, labels]))
    ref = margin_logits_reference(emb, centres, labels, kind, scale, margin, easy)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-3)

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, got)
    assert float(loss) == pytest.approx(margin_loss_reference(ref, labels), rel=1e-4)


def test_arcface_margin_is_angular_and_threshold_branch_is_used() -> None:
    emb, centres, labels = _case(1)
    ref = margin_logits_reference(emb, centres, labels, "arcface", 64.0, 0.5, False)
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    w = centres / np.linalg.norm(centres, axis=0, keepdims=True)
    cos = x @ w
    # target logit of a near-centre sample is s·cos(θ + m), non-target logits untouched
    i = 3
    theta = math.acos(cos[i, labels[i]])
    assert ref[i, labels[i]] == pytest.approx(64 * math.cos(theta + 0.5), abs=1e-3)
    others = [c for c in range(centres.shape[1]) if c != labels[i]]
    np.testing.assert_allclose(ref[i, others], 64 * cos[i, others], atol=1e-3)
    # the opposite samples take the linear fall-back (cos θ − m·sin m), which stays below cos θ
    for i in range(3):
        c = cos[i, labels[i]]
        assert ref[i, labels[i]] == pytest.approx(
            64 * (c - math.sin(math.pi - 0.5) * 0.5), abs=1e-3
        )
        assert ref[i, labels[i]] < 64 * c


def test_margin_makes_the_loss_larger_and_gradients_finite() -> None:
    import tensorflow as tf

    emb, centres, labels = _case(2)
    plain = margin_logits_reference(emb, centres, labels, "cosface", 64.0, 0.0)
    arc = margin_logits_reference(emb, centres, labels, "arcface", 64.0, 0.5)
    assert margin_loss_reference(arc, labels) > margin_loss_reference(plain, labels)

    head = MarginHead(centres.shape[1])
    x = tf.Variable(emb)
    with tf.GradientTape() as tape:
        logits = head([x, labels])
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    grads = tape.gradient(loss, [x, head.centres.value])
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_margin_schedule_variable_changes_the_margin_in_use() -> None:
    emb, centres, labels = _case(4)
    head = MarginHead(centres.shape[1], kind="arcface", scale=64.0, margin=0.5)
    head.build([emb.shape, labels.shape])
    head.centres.assign(centres)
    for m in (0.0, 0.2, 0.5):
        head.current_margin.assign(m)
        ref = margin_logits_reference(emb, centres, labels, "arcface", 64.0, m)
        np.testing.assert_allclose(np.asarray(head([emb, labels])), ref, rtol=1e-4, atol=2e-3)
