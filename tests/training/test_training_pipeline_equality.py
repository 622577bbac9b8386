"""The pipeline's promise: a photo gives the same embedding (to 1e-5) through the training
code path (prepare's per-image function + the training-side embedder) and through the
service's code path (FacePipeline.faces_in_bytes + the exported SavedModel signature)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PHOTOS = [
    "lfw/train/Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
    "orl/s5/3.pgm",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import keras

    from training.backbones import build_backbone
    from training.export import export_savedmodel

    keras.utils.set_random_seed(11)
    backbone = build_backbone("mobilefacenet")
    out = export_savedmodel(backbone, tmp_path_factory.mktemp("store") / "m" / "1")
    return backbone, out


def _celeba_photo(data_root: Path) -> str:
    folder = sorted(p for p in (data_root / "celeba").iterdir() if p.is_dir())[1]
    return str(sorted(folder.glob("*.jpg"))[0].relative_to(data_root))


def test_training_and_service_paths_give_the_same_embedding(exported, data_root) -> None:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    from faces import FacePipeline
    from training.evaluate import keras_embed_fn
    from training.prepare import process_image

    backbone, model_dir = exported
    training_pipeline, service_pipeline = FacePipeline(), FacePipeline()
    train_embed = keras_embed_fn(backbone)
    serving = tf.saved_model.load(str(model_dir)).signatures["serving_default"]

    for rel in [*PHOTOS, _celeba_photo(data_root)]:
        path = data_root / rel
        face, status = process_image(training_pipeline, path)
        assert face is not None, f"{rel}: {status}"
        train_vec = train_embed(face.crop[None])[0]

        served_faces = service_pipeline.faces_in_bytes(path.read_bytes())
        served_vec = serving(images=tf.constant(served_faces[0].crop[None]))["embedding"].numpy()[0]

        assert np.array_equal(face.crop, served_faces[0].crop), rel
        np.testing.assert_allclose(train_vec, served_vec, atol=1e-5, err_msg=rel)
        assert abs(float(np.linalg.norm(served_vec)) - 1.0) < 1e-5
