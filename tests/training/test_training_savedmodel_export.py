"""export → tf.saved_model.load gives the Keras model's outputs, with the served signature."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def backbone():  # type: ignore[no-untyped-def]
    import keras

    from training.backbones import build_backbone

    keras.utils.set_random_seed(3)
    model = build_backbone("mobilefacenet")
    # non-trivial BatchNorm statistics, as after training
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            rng = np.random.default_rng(len(layer.name))
            layer.moving_mean.assign(rng.normal(0, 0.1, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype("float32"))
    return model


def build_embedding_model(backbone):  # type: ignore[no-untyped-def]
    """The reference the export is compared with: backbone + L2 normalisation in Keras."""
    import keras

    image = keras.Input((112, 112, 3), dtype="float32", name="image")
    emb = keras.ops.cast(backbone(image), "float32")
    emb = keras.layers.UnitNormalization(axis=-1, name="l2_normalise", dtype="float32")(emb)
    return keras.Model(image, emb, name="embedder")


def _real_crops(data_root: Path, pipeline) -> np.ndarray:  # type: ignore[no-untyped-def]
    paths = [data_root / "orl/s3/2.pgm", data_root / "lfw/train/AJ_Cook/AJ_Cook_0001.jpg"]
    return np.stack([pipeline.faces_in_file(str(p))[0].crop for p in paths])


@pytest.mark.subprocess  # saved_model_cli
def test_export_then_load_matches_keras(backbone, data_root, pipeline, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    from training.export import export_savedmodel

    out = export_savedmodel(backbone, tmp_path / "model" / "1")
    assert (out / "saved_model.pb").exists() and (out / "variables").is_dir()

    crops = np.concatenate(
        [
            _real_crops(data_root, pipeline),
            np.random.default_rng(0).integers(0, 256, (6, 112, 112, 3), np.uint8),
        ]
    )
    expected = build_embedding_model(backbone).predict(crops.astype(np.float32), verbose=0)

    loaded = tf.saved_model.load(str(out))
    fn = loaded.signatures["serving_default"]
    spec = fn.structured_input_signature[1]
    assert list(spec) == ["images"]
    assert spec["images"].dtype == tf.uint8 and spec["images"].shape.as_list() == [
        None,
        112,
        112,
        3,
    ]
    got = fn(images=tf.constant(crops))
    assert set(got) == {"embedding"}
    emb = got["embedding"].numpy()
    assert emb.dtype == np.float32 and emb.shape == (8, 128)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    # distinct faces give distinct embeddings (the model is not constant)
    assert float(emb[0] @ emb[1]) < 0.999

    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run(
        [str(cli), "show", "--dir", str(out), "--all"], capture_output=True, text=True, check=True
    ).stdout
    assert "signature_def['serving_default']" in shown
    assert "inputs['images']" in shown and "DT_UINT8" in shown
    assert "outputs['embedding']" in shown and "(-1, 112, 112, 3)" in shown and "(-1, 128)" in shown


def test_float16_weight_storage_halves_the_size_and_keeps_the_embeddings(
    backbone, data_root, pipeline, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import tensorflow as tf

    from training.export import export_savedmodel

    full = export_savedmodel(backbone, tmp_path / "f32" / "1")
    half = export_savedmodel(backbone, tmp_path / "f16" / "1", weights_dtype="float16")

    def weight_bytes(d: Path) -> int:
        return sum(f.stat().st_size for f in (d / "variables").iterdir())

    assert weight_bytes(half) < 0.6 * weight_bytes(full)
    crops = _real_crops(data_root, pipeline)
    expected = build_embedding_model(backbone).predict(crops.astype(np.float32), verbose=0)
    fn = tf.saved_model.load(str(half)).signatures["serving_default"]
    assert list(fn.structured_input_signature[1]) == ["images"]
    emb = fn(images=tf.constant(crops))["embedding"].numpy()
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, expected, atol=5e-3)
    assert np.min(np.sum(emb * expected, axis=1)) > 0.9999
    with pytest.raises(ValueError):
        export_savedmodel(backbone, tmp_path / "bad" / "1", weights_dtype="int8")
