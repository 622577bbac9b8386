"""EmbeddingModel and the model card checks."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from faceid_testkit import REAL_MODEL_DIR, TINY_DIM, write_card

from app.domain_errors import StartupError
from app.inference.model import EmbeddingModel
from app.inference.model import load_card as read_card


def test_embeds_uint8_crops_into_unit_vectors_reading_the_input_key(tiny_model_dir: Path) -> None:
    model = EmbeddingModel(tiny_model_dir)
    assert model.input_key == "faces"  # read from the signature, not hard-coded
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    emb = model.embed(crops)
    assert emb.shape == (3, TINY_DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(model.embed(crops[1:2])[0], emb[1], atol=1e-5)
    assert model.embed(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, TINY_DIM)
    with pytest.raises(ValueError):
        model.embed(crops.astype(np.float32))


def test_missing_card_refuses(tmp_path: Path, tiny_model_dir: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "model_card.json").unlink()
    with pytest.raises(StartupError, match=r"model_card\.json is missing"):
        read_card(copy)
    with pytest.raises(StartupError, match="does not exist"):
        read_card(tmp_path / "nowhere")


def test_preprocessing_mismatch_refuses_with_both_versions_named(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    write_card(tmp_path, preprocessing_version="dlib-68+v0")
    with pytest.raises(StartupError, match=r"dlib-68\+v0.*mtcnn"):
        read_card(tmp_path)


def test_invalid_card_and_dimension_mismatch_refuse(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "model_card.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(StartupError, match="invalid"):
        read_card(tmp_path)
    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    write_card(copy, embedding_dim=TINY_DIM * 2)
    with pytest.raises(StartupError, match="embeddings but its card says"):
        EmbeddingModel(copy)


def test_engines_agree_and_tflite_handles_every_batch_size(tiny_model_dir: Path) -> None:
    lite = EmbeddingModel(tiny_model_dir, engine="tflite")
    int8 = EmbeddingModel(tiny_model_dir, engine="tflite-int8")
    plain = EmbeddingModel(tiny_model_dir, engine="savedmodel")
    assert (lite.engine, int8.engine, plain.engine) == ("tflite", "tflite-int8", "savedmodel")
    crops = np.random.default_rng(3).integers(0, 256, (7, 112, 112, 3), dtype=np.uint8)
    want = plain.embed(crops)
    for n in (1, 7, 2, 1):  # the interpreter is resized between calls
        np.testing.assert_allclose(lite.embed(crops[:n]), want[:n], atol=1e-4)
        cosines = np.sum(int8.embed(crops[:n]) * want[:n], axis=1)
        assert cosines.min() > 0.99 and not np.allclose(int8.embed(crops[:n]), want[:n])
    first = lite.embed(crops[:1])
    lite.embed(crops[1:3])
    np.testing.assert_array_equal(first, lite.embed(crops[:1]))  # no reused output buffer


def test_a_converted_model_that_disagrees_is_not_used(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import app.inference.model as model_module

    monkeypatch.setattr(model_module, "_FLOAT_MIN_COSINE", 1.01)  # nothing can agree
    monkeypatch.setattr(model_module, "_INT8_MIN_COSINE", 1.01)
    for engine in ("tflite", "tflite-int8"):
        model = EmbeddingModel(tiny_model_dir, engine=engine)  # type: ignore[arg-type]
        assert model.engine == "savedmodel"
        assert model.embed(np.zeros((1, 112, 112, 3), np.uint8)).shape == (1, TINY_DIM)


def test_the_signature_rename_note_is_dropped_only_inside_the_conversion(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from absl import logging as absl_logging

    from app.inference.model import _without_signature_rename_notes

    def note() -> None:  # the call in tensorflow/python/saved_model/signature_serialization.py
        absl_logging.info(
            "Function `%s` contains input name(s) %s with unsupported "
            "characters which will be renamed to %s in the SavedModel.",
            "signature_wrapper_serve",
            "10557, 10559",
            "unknown_0, unknown_1",
        )

    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="absl"):
        with _without_signature_rename_notes():
            note()
            absl_logging.info("another absl record")
        assert [r.getMessage() for r in caplog.records] == ["another absl record"]
        note()  # outside the block the logger is as it was
        assert "unknown_1" in caplog.records[-1].getMessage()


@pytest.mark.slow
def test_converting_the_shipped_model_logs_no_input_name_list(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every start-up converts the shipped FaceNet; TensorFlow's SavedModel writer used to
    log a 10 kB line listing its 489 captured inputs (``unknown_0 … unknown_488``)."""
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="absl"):
        model = EmbeddingModel(REAL_MODEL_DIR, engine="tflite-int8", threads=1)
    assert model.engine == "tflite-int8"
    logged = [r.getMessage() for r in caplog.records]
    printed = capfd.readouterr()
    for text in (*logged, printed.out, printed.err):
        assert "contains input name(s)" not in text and "unknown_488" not in text
    assert max(map(len, logged), default=0) < 1000
