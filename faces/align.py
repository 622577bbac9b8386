"""Five-point similarity alignment onto the standard 112×112 ArcFace template."""

from __future__ import annotations

import numpy as np
from PIL import Image

ALIGNED_SIZE = 112

# (x, y) of left eye, right eye, nose tip, left and right mouth corner, "left" as seen in
# the image, in a 112×112 crop whose pixel centres sit on integer coordinates.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src → dst.

    Umeyama's closed form; returns a 2×3 matrix M with dst ≈ M @ [x, y, 1].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    n = src.shape[0]
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / n
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: int = ALIGNED_SIZE,
    template: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` so that the 5 ``landmarks`` land on the ArcFace template (scaled to
    ``size``) or on ``template`` (5×2 target points in a ``size``×``size`` crop).

    Returns the aligned ``size``×``size``×3 uint8 crop and the 2×3 forward matrix
    (image coordinates → crop coordinates).
    """
    if template is None:
        template = ARCFACE_TEMPLATE * (size / ALIGNED_SIZE)
    forward = similarity_transform(np.asarray(landmarks, dtype=np.float64), template)
    full = np.vstack([forward, [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(full)[:2]
    # Pillow samples at pixel centres (i + 0.5); our coordinates put centres on integers.
    a, b, c = inverse[0]
    d, e, f = inverse[1]
    coeffs = (a, b, c + 0.5 - 0.5 * (a + b), d, e, f + 0.5 - 0.5 * (d + e))
    src = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    warped = src.transform((size, size), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.uint8), forward
