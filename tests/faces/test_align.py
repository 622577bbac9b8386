"""Five landmarks land on the ArcFace template within 1 px, by matrix and by pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from faces import ARCFACE_TEMPLATE, align_face
from faces.align import similarity_transform


def _similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array(
        [
            [scale * math.cos(a), -scale * math.sin(a), tx],
            [scale * math.sin(a), scale * math.cos(a), ty],
        ]
    )


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty"), [(2.0, 0, 40, 30), (1.6, 17, 90, 20), (3.1, -25, 10, 120)]
)
def test_forward_matrix_maps_landmarks_onto_template(
    scale: float, angle: float, tx: float, ty: float
) -> None:
    landmarks = _apply(_similarity(scale, angle, tx, ty), ARCFACE_TEMPLATE)
    image = np.zeros((400, 400, 3), np.uint8)
    _, forward = align_face(image, landmarks)
    err = np.linalg.norm(_apply(forward, landmarks) - ARCFACE_TEMPLATE, axis=1)
    assert err.max() < 1e-6


def test_similarity_transform_recovers_a_known_transform_from_noisy_points() -> None:
    rng = np.random.default_rng(0)
    truth = _similarity(0.45, 12, -20, 15)
    src = rng.uniform(50, 250, size=(5, 2))
    dst = _apply(truth, src) + rng.normal(scale=0.2, size=(5, 2))
    est = similarity_transform(src, dst)
    assert np.abs(est[:, :2] - truth[:, :2]).max() < 0.01
    assert np.linalg.norm(_apply(est, src) - _apply(truth, src), axis=1).max() < 0.5
    # the linear part is a rotation times a uniform scale (no shear, no reflection)
    lin = est[:, :2]
    s = math.sqrt(abs(np.linalg.det(lin)))
    np.testing.assert_allclose(lin @ lin.T / s**2, np.eye(2), atol=1e-9)
    assert np.linalg.det(lin) > 0


def _render_dots(points: np.ndarray, shape: tuple[int, int], sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = np.zeros(shape)
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    return np.repeat((np.clip(img, 0, 1) * 255).round().astype(np.uint8)[:, :, None], 3, axis=2)


def _dot_centres(crop: np.ndarray, near: np.ndarray, radius: int = 7) -> np.ndarray:
    grey = crop[:, :, 0].astype(np.float64)
    yy, xx = np.mgrid[0 : grey.shape[0], 0 : grey.shape[1]]
    out = []
    for x0, y0 in near:
        w = grey * (((xx - x0) ** 2 + (yy - y0) ** 2) <= radius**2)
        out.append([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])
    return np.array(out)


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty"), [(2.2, 0, 30, 25), (2.0, 20, 150, 10), (1.5, -30, 40, 160)]
)
def test_rendered_dots_land_on_the_template_within_one_pixel(
    scale: float, angle: float, tx: float, ty: float
) -> None:
    landmarks = _apply(_similarity(scale, angle, tx, ty), ARCFACE_TEMPLATE)
    image = _render_dots(landmarks, (380, 360), sigma=1.6 * scale)
    crop, _ = align_face(image, landmarks)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    found = _dot_centres(crop, ARCFACE_TEMPLATE)
    err = np.linalg.norm(found - ARCFACE_TEMPLATE, axis=1)
    assert err.max() < 1.0, err

    # the check has teeth: landmarks that are 4 px off in the photo give dots off template
    shifted = landmarks + np.array([4.0 * scale, 0.0])
    crop_bad, _ = align_face(image, shifted)
    err_bad = np.linalg.norm(_dot_centres(crop_bad, ARCFACE_TEMPLATE) - ARCFACE_TEMPLATE, axis=1)
    assert err_bad.min() > 2.0


def test_real_photo_landmarks_are_warped_onto_the_template(data_root, pipeline) -> None:  # type: ignore[no-untyped-def]
    path = data_root / "lfw" / "train" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
    face = pipeline.faces_in_file(str(path))[0]
    _, forward = align_face(np.zeros((250, 250, 3), np.uint8), face.landmarks)
    warped = _apply(forward, face.landmarks)
    # a similarity cannot fit 5 real points exactly, but a frontal face fits within a few px
    assert np.linalg.norm(warped - ARCFACE_TEMPLATE, axis=1).max() < 6.0


def test_a_given_template_replaces_the_arcface_one() -> None:
    loose = ARCFACE_TEMPLATE * 0.8 + 20.0  # a looser crop: the face smaller in a 160 frame
    landmarks = _apply(_similarity(1.7, 12, 60, 40), ARCFACE_TEMPLATE)
    crop, forward = align_face(np.zeros((400, 400, 3), np.uint8), landmarks, 160, loose)
    assert crop.shape == (160, 160, 3)
    assert np.linalg.norm(_apply(forward, landmarks) - loose, axis=1).max() < 1e-6
    _, default = align_face(np.zeros((400, 400, 3), np.uint8), landmarks, 160)
    assert (
        np.linalg.norm(_apply(default, landmarks) - ARCFACE_TEMPLATE * 160 / 112, axis=1).max()
        < 1e-6
    )
