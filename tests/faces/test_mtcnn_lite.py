"""The fast detector (``lite``: TensorFlow Lite + NumPy) against mtcnn 1.0.0's own code path.

Each replaced piece is checked against the TensorFlow op or mtcnn function it stands in
for, and the whole detector against the reference on real LFW photos, CelebA scenes, a
greyscale ORL face and an upscaled photo: same faces, boxes and landmarks within a pixel,
same aligned crops, same embeddings within tolerance.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from app.settings import REPO_ROOT
from faces import ALIGNED_SIZE, FaceDetector, align_face, decode_image
from faces.mtcnn_lite import area_resize, crop_and_resize, nms, square

DATA = Path(os.environ.get("FACEID_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))
REAL_MODEL_DIR = REPO_ROOT / "model_store" / "faceid" / "2"


@pytest.fixture(scope="module")
def detectors() -> tuple[FaceDetector, FaceDetector]:
    return FaceDetector(backend="reference"), FaceDetector(backend="lite")


def _photos() -> list[Path]:
    if not (DATA / "lfw" / "train").is_dir() or not (DATA / "celeba").is_dir():
        pytest.skip(f"shared datasets not found at {DATA}")
    lfw = sorted((DATA / "lfw" / "train").glob("*/*.jpg"))
    celeba = sorted((DATA / "celeba").glob("*/*.jpg"))
    pick = np.linspace(0, 1, 30)
    return [
        *(lfw[int(f * (len(lfw) - 1))] for f in pick),
        *(celeba[int(f * (len(celeba) - 1))] for f in pick),
        DATA / "celeba" / "7409" / "027779.jpg",  # three faces
        DATA / "orl" / "s1" / "1.pgm",  # greyscale
    ]


def test_area_resize_matches_tensorflow() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    image = ((rng.integers(0, 256, (250, 203, 3)) - 127.5) / 128).astype(np.float32)
    for height, width in [(75, 60), (53, 43), (37, 30), (18, 15), (12, 12), (250, 203)]:
        want = tf.image.resize(image[None], (height, width), method="area").numpy()[0]
        got = area_resize(image, height, width)
        assert got.shape == want.shape == (height, width, 3)
        assert np.abs(got - want).max() < 2e-5


def test_crop_and_resize_matches_tensorflow() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(1)
    image = rng.normal(size=(120, 90, 3)).astype(np.float32)
    # inside, partly outside on every side, and one degenerate (zero-height) box
    boxes = np.array(
        [
            [0.1, 0.2, 0.6, 0.7],
            [-0.2, -0.1, 0.4, 0.5],
            [0.7, 0.6, 1.3, 1.2],
            [0.3, 0.3, 0.3, 0.8],
            [0.0, 0.0, 1.0, 1.0],
        ],
        dtype=np.float32,
    )
    for size in (24, 48):
        want = tf.image.crop_and_resize(
            image[None], boxes, np.zeros(len(boxes), dtype=np.int32), (size, size)
        ).numpy()
        got = crop_and_resize(image, boxes, size)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4
    assert (got[1, :5, :5] == 0).all()  # outside the image: zeros, as TensorFlow


@pytest.mark.parametrize("method", ["union", "min"])
def test_nms_and_square_match_mtcnn(method: str) -> None:
    from mtcnn.utils.bboxes import resize_to_square, smart_nms_from_bboxes

    rng = np.random.default_rng(2)
    xy = rng.uniform(0, 200, (300, 2))
    wh = rng.uniform(8, 60, (300, 2))
    boxes = np.column_stack([np.zeros(300), xy, xy + wh, rng.uniform(0.5, 1, 300)])
    boxes = boxes[np.argsort(boxes[:, 5])[::-1]]
    want = smart_nms_from_bboxes(boxes, threshold=0.5, method=method, initial_sort=False)
    got = nms(boxes, 0.5, method)
    assert 0 < len(got) < len(boxes)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(square(got), resize_to_square(want))


def test_same_faces_boxes_and_landmarks_as_mtcnn(detectors) -> None:  # type: ignore[no-untyped-def]
    reference, lite = detectors
    faces_seen = 0
    for path in _photos():
        pixels = decode_image(path.read_bytes()).pixels
        want, got = reference.detect(pixels), lite.detect(pixels)
        assert len(got) == len(want), path
        for a, b in zip(want, got, strict=True):
            assert np.abs(np.subtract(a.box, b.box)).max() < 1.0, path
            assert np.abs(a.landmarks - b.landmarks).max() < 1.0, path
            assert abs(a.score - b.score) < 1e-3, path
        faces_seen += len(got)
    assert faces_seen >= 55  # the photos have faces: the comparison is not vacuous


def test_large_photo_and_blank_image(detectors) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    if not (DATA / "celeba").is_dir():
        pytest.skip(f"shared datasets not found at {DATA}")
    reference, lite = detectors
    photo = decode_image((DATA / "celeba" / "7409" / "027779.jpg").read_bytes()).pixels
    h, w = photo.shape[:2]
    big = np.asarray(Image.fromarray(photo).resize((w * 5, h * 5), Image.Resampling.BILINEAR))
    want, got = reference.detect(big), lite.detect(big)
    assert len(got) == len(want) >= 1
    for a, b in zip(want, got, strict=True):  # scaled back by 1280/max side: ≤ 1 px there
        assert np.abs(np.subtract(a.box, b.box)).max() < 1.0 * big.shape[1] / 640
    blank = np.full((300, 300, 3), 128, dtype=np.uint8)
    assert reference.detect(blank) == [] and lite.detect(blank) == []


def test_same_crops_and_embeddings(detectors) -> None:  # type: ignore[no-untyped-def]
    reference, lite = detectors
    crops_ref, crops_lite = [], []
    for path in _photos()[::6]:
        pixels = decode_image(path.read_bytes()).pixels
        for a, b in zip(reference.detect(pixels), lite.detect(pixels), strict=True):
            crops_ref.append(align_face(pixels, a.landmarks, ALIGNED_SIZE)[0])
            crops_lite.append(align_face(pixels, b.landmarks, ALIGNED_SIZE)[0])
    assert len(crops_ref) >= 8
    diff = np.abs(np.stack(crops_ref).astype(int) - np.stack(crops_lite).astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.05
    if not (REAL_MODEL_DIR / "saved_model.pb").is_file():
        pytest.skip("no shipped model for the embedding comparison")
    from app.inference.model import EmbeddingModel

    model = EmbeddingModel(REAL_MODEL_DIR, engine="savedmodel")
    cosine = np.sum(model.embed(np.stack(crops_ref)) * model.embed(np.stack(crops_lite)), axis=1)
    assert cosine.min() > 0.9999


def test_lite_is_thread_safe(detectors) -> None:  # type: ignore[no-untyped-def]
    _, lite = detectors
    images = [decode_image(p.read_bytes()).pixels for p in _photos()[::4]]
    expected = [[f.box for f in lite.detect(img)] for img in images]
    results: dict[int, list[list[tuple[float, ...]]]] = {}

    def worker(k: int) -> None:
        order = images[k:] + images[:k]
        out = [[f.box for f in lite.detect(img)] for img in order]
        results[k] = out[-k:] + out[:-k] if k else out

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(4))


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="backend"):
        FaceDetector(backend="fast")  # type: ignore[arg-type]


def test_litert_runs_the_converted_networks_as_tensorflow_lite_does(detectors) -> None:  # type: ignore[no-untyped-def]
    """The service's detector: the same three flatbuffers, handed over as bytes and run by
    the standalone LiteRT interpreter (no TensorFlow, no mtcnn package), finds exactly what
    the in-process lite detector finds."""
    from faces.mtcnn_lite import convert_networks

    _, in_process = detectors
    lean = FaceDetector(backend="lite", lite_nets=convert_networks())
    assert lean._mtcnn is None and lean._lite.pnet.runtime == "litert"
    for path in _photos():
        pixels = decode_image(path.read_bytes()).pixels
        want = [(f.box, f.score, f.landmarks) for f in in_process.detect(pixels)]
        got = [(f.box, f.score, f.landmarks) for f in lean.detect(pixels)]
        assert len(got) == len(want), path
        for (box, score, marks), (box0, score0, marks0) in zip(got, want, strict=True):
            np.testing.assert_allclose(box, box0, atol=1e-3)
            np.testing.assert_allclose(marks, marks0, atol=1e-3)
            assert abs(score - score0) < 1e-5
