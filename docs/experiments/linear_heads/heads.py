"""Linear metric-learning heads on top of 128-d L2-normalised embeddings.

Every head is (mean m [128], matrix W [128, k]); applied as  z = (x - m) @ W,  then
L2-normalised again and scored by cosine.

Shrinkage λ is given relative to the average eigenvalue of the matrix it regularises
(λ_abs = alpha * trace(S) / d), so one grid fits every covariance scale.
"""

from __future__ import annotations

import numpy as np


def l2n(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=1, keepdims=True), 1e-12))


def apply(x: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    m, w = head
    return l2n((x - m) @ w).astype(np.float32)


def within_cov(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """Pooled within-class covariance over classes with >= 2 images."""
    d = x.shape[1]
    s = np.zeros((d, d))
    n = 0
    for c in np.unique(y):
        xc = x[y == c]
        if len(xc) < 2:
            continue
        r = xc - xc.mean(0)
        s += r.T @ r
        n += len(xc) - 1  # degrees of freedom
    return s / max(n, 1), n


def between_cov(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Covariance of the class means (one vote per class; singletons included)."""
    classes = np.unique(y)
    mu = np.stack([x[y == c].mean(0) for c in classes])
    r = mu - mu.mean(0)
    return r.T @ r / len(classes)


def shrink(s: np.ndarray, alpha: float) -> np.ndarray:
    d = s.shape[0]
    return s + alpha * np.trace(s) / d * np.eye(d)


def inv_sqrt(s: np.ndarray) -> np.ndarray:
    e, v = np.linalg.eigh(s)
    return (v / np.sqrt(np.maximum(e, 1e-12))) @ v.T


def identity_head(x, y) -> tuple[np.ndarray, np.ndarray]:
    d = x.shape[1]
    return np.zeros(d), np.eye(d)


def center_head(x, y) -> tuple[np.ndarray, np.ndarray]:
    d = x.shape[1]
    return x.mean(0), np.eye(d)


def wccn_head(x, y, alpha: float, center: bool):
    sw, _ = within_cov(x, y)
    m = x.mean(0) if center else np.zeros(x.shape[1])
    return m, inv_sqrt(shrink(sw, alpha))


def lda_head(x, y, alpha: float, k: int, center: bool = True):
    """Generalised eigenvectors of (Sb, Sw + λI), top k, normalised so V^T Sw_reg V = I.

    With k = d this equals WCCN with the same λ up to a rotation (same cosines)."""
    sw, _ = within_cov(x, y)
    sb = between_cov(x, y)
    # generalised symmetric eigenproblem Sb v = e Sw_reg v via Cholesky (no scipy here)
    chol = np.linalg.cholesky(shrink(sw, alpha))
    li = np.linalg.inv(chol)
    e, u = np.linalg.eigh(li @ sb @ li.T)
    v = li.T @ u  # V^T Sw_reg V = I
    order = np.argsort(e)[::-1][:k]
    m = x.mean(0) if center else np.zeros(x.shape[1])
    return m, v[:, order]


def pca_white_head(x, y, alpha: float, k: int):
    """PCA whitening of all (training) embeddings: top k components, 1/sqrt(eig + λ)."""
    m = x.mean(0)
    st = np.cov((x - m).T)
    e, v = np.linalg.eigh(st)
    order = np.argsort(e)[::-1][:k]
    lam = alpha * np.trace(st) / st.shape[0]
    return m, v[:, order] / np.sqrt(e[order] + lam)
