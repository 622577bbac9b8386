"""The shared MTCNN pipeline finds the face in real photos of the three datasets."""

from __future__ import annotations

import numpy as np
import pytest

PHOTOS = [
    ("lfw/train/Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "lfw"),
    ("lfw/train/AJ_Cook/AJ_Cook_0001.jpg", "lfw"),
    ("orl/s1/1.pgm", "orl"),
    ("orl/s17/5.pgm", "orl"),
]


def _celeba_photos(data_root, n: int = 3) -> list[str]:  # type: ignore[no-untyped-def]
    folders = sorted(p for p in (data_root / "celeba").iterdir() if p.is_dir())[:n]
    return [str(sorted(f.glob("*.jpg"))[0].relative_to(data_root)) for f in folders]


def _check_face(face, width: int, height: int) -> None:  # type: ignore[no-untyped-def]
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert face.score >= 0.9
    lm = face.landmarks
    assert lm.shape == (5, 2)
    # landmarks inside the (slightly enlarged) box, eyes left→right, eyes above mouth
    margin = 0.1 * (x2 - x1)
    assert (lm[:, 0] > x1 - margin).all() and (lm[:, 0] < x2 + margin).all()
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]
    assert max(lm[0, 1], lm[1, 1]) < min(lm[3, 1], lm[4, 1])
    assert face.crop.shape == (112, 112, 3) and face.crop.dtype == np.uint8


@pytest.mark.parametrize(("rel", "kind"), PHOTOS)
def test_finds_the_face(data_root, pipeline, rel: str, kind: str) -> None:  # type: ignore[no-untyped-def]
    from faces import decode_image

    path = data_root / rel
    pixels = decode_image(path.read_bytes()).pixels
    h, w = pixels.shape[:2]
    faces = pipeline.faces_in_file(str(path))
    assert faces, f"no face found in {rel}"
    _check_face(faces[0], w, h)
    x1, y1, x2, y2 = faces[0].box
    if kind == "lfw":  # LFW crops are centred on the labelled face
        assert x1 < w / 2 < x2 and y1 < h / 2 < y2
        assert 50 < x2 - x1 < 200
    if kind == "orl":  # greyscale in, three equal channels out
        assert np.array_equal(faces[0].crop[..., 0], faces[0].crop[..., 1])
        assert (x2 - x1) > 0.4 * w


def test_finds_faces_in_celeba_scenes(data_root, pipeline) -> None:  # type: ignore[no-untyped-def]
    from faces import decode_image

    for rel in _celeba_photos(data_root):
        path = data_root / rel
        pixels = decode_image(path.read_bytes()).pixels
        faces = pipeline.faces_in_file(str(path))
        assert faces, f"no face found in {rel}"
        _check_face(faces[0], pixels.shape[1], pixels.shape[0])
        areas = [f.detection.area for f in faces]
        assert areas == sorted(areas, reverse=True)  # largest first


@pytest.mark.parametrize(
    ("side", "min_face"), [(250, 20), (250, 40), (187, 40), (640, 48), (50, 40)]
)
def test_scale_pyramid_stops_at_the_last_level_pnet_can_read(side: int, min_face: int) -> None:
    from faces.detect import _scale_pyramid

    scales = _scale_pyramid(side + 30, side, min_face, 0.709)
    assert len(scales) >= 1
    assert scales[0] == pytest.approx(12 / min_face)
    np.testing.assert_allclose(scales[1:] / scales[:-1], 0.709)
    assert side * scales[-1] >= 12 > side * scales[-1] * 0.709


def test_scale_pyramid_is_empty_when_the_photo_is_smaller_than_the_smallest_face() -> None:
    from faces.detect import _scale_pyramid

    assert len(_scale_pyramid(100, 30, 40, 0.709)) == 0


def test_min_face_size_is_honoured(data_root, pipeline) -> None:  # type: ignore[no-untyped-def]
    """mtcnn 1.0.0 alone finds nothing from min_face_size 30 on; ours finds faces at least
    that large and skips smaller ones."""
    from PIL import Image

    from faces import FaceDetector, decode_image

    pixels = decode_image((data_root / PHOTOS[0][0]).read_bytes()).pixels  # face ≈ 100 px
    big = FaceDetector(min_face_size=60)
    [face] = big.detect(pixels)[:1]
    assert face.box[2] - face.box[0] > 60
    small = np.asarray(Image.fromarray(pixels).resize((64, 64)))  # face ≈ 25 px
    assert pipeline.detector.min_face_size == 40
    assert not big.detect(small)
    assert FaceDetector(min_face_size=20).detect(small)
    with pytest.raises(ValueError):
        FaceDetector(min_face_size=8)


def test_prepare_redoes_identities_cached_with_other_pipeline_settings(data_root, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import os

    from faces.pipeline import pipeline_signature
    from training.prepare import prepare_datasets

    root = tmp_path / "orl"
    root.mkdir()
    for person in ("s1", "s2"):
        (root / person).symlink_to(data_root / "orl" / person)
    cache = tmp_path / "cache"
    prepare_datasets([("orl", root)], cache)
    entry = json.loads((cache / "orl" / "s1.json").read_text())
    assert entry["pipeline"] == pipeline_signature() and "min_face=40" in entry["pipeline"]
    old = {**entry, "pipeline": pipeline_signature(min_face_size=20)}
    (cache / "orl" / "s1.json").write_text(json.dumps(old))
    for npz in (cache / "orl").glob("*.npz"):
        os.utime(npz, (1, 1))
    report = prepare_datasets([("orl", root)], cache)["orl"]
    used = [json.loads((cache / "orl" / f"{p}.json").read_text())["used"] for p in ("s1", "s2")]
    assert report.identities == 2 and report.used == sum(used) and used[0] == entry["used"]
    assert json.loads((cache / "orl" / "s1.json").read_text())["pipeline"] == pipeline_signature()
    assert (cache / "orl" / "s1.npz").stat().st_mtime > 1  # redone
    assert (cache / "orl" / "s2.npz").stat().st_mtime == 1  # kept
