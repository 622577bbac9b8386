"""Load a model version directory (SavedModel + ``model_card.json``) and embed faces.

The directory is what TF Serving serves: ``saved_model.pb`` and ``variables/`` directly
inside it, signature ``serving_default`` taking a batch of aligned 112×112×3 uint8 faces
(its input key is read from the signature) and returning ``embedding``: L2-normalised
float32 [N, D]. The card beside it must name the face pipeline's
``PREPROCESSING_VERSION``; anything else refuses to start with a clear message.

Engines. On a GPU the SavedModel runs as it is (``savedmodel``). On a CPU the loaded
SavedModel is converted once, at startup, into a TensorFlow Lite flatbuffer run by the
XNNPACK delegate; the converter folds the float16→float32 weight casts that the
SavedModel repeats on every call. ``tflite`` keeps float32 weights (embeddings equal to
the SavedModel's to rounding); ``tflite-int8`` (the CPU default) stores the weights as
int8 and quantises activations on the fly. Before the service uses a converted engine it
embeds a probe batch with it and with the SavedModel, and keeps the SavedModel if they
disagree (cosine below 0.9999 for float32, 0.99 for int8). Speed and accuracy of each
engine: docs/BENCHMARKS.md.

This class runs everything in its own process, TensorFlow included: the service's default
CPU engines instead convert in a child process and serve on LiteRT
(``app/inference/engines.py``); ``tflite-tf`` and ``tflite-int8-tf`` name this in-process
path there (here they mean the same as ``tflite`` and ``tflite-int8``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.domain_errors import StartupError
from faces.cpu import usable_cores
from faces.model_contract import (
    INPUT_SHAPE,
    OUTPUT_NAME,
    SIGNATURE_NAME,
    ModelCard,
    ModelCardError,
    read_card,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger("faceid.model")

Engine = Literal["auto", "tflite", "tflite-int8", "tflite-tf", "tflite-int8-tf", "savedmodel"]
_ENGINES = ("tflite", "tflite-int8", "tflite-tf", "tflite-int8-tf", "savedmodel")
# How close (cosine) a converted model's embeddings of a probe batch must stay to the
# SavedModel's before the service uses it: float32 must match to rounding; int8 weights
# move an embedding by a few thousandths.
_FLOAT_MIN_COSINE = 0.9999
_INT8_MIN_COSINE = 0.99
_PROBE_SIZE = 4


def checked_crops(crops: np.ndarray) -> np.ndarray:
    """``crops`` as an array, if it is what every engine takes: uint8 N×112×112×3."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != INPUT_SHAPE or crops.dtype != np.uint8:
        raise ValueError(f"expected uint8 N×{INPUT_SHAPE}, got {crops.dtype} {crops.shape}")
    return crops


def probe_batch() -> np.ndarray:
    """The fixed random batch every converted engine is checked on."""
    return np.random.default_rng(0).integers(0, 256, (_PROBE_SIZE, *INPUT_SHAPE), dtype=np.uint8)


def agreement_floor(int8_weights: bool) -> float:
    """The lowest probe cosine to the SavedModel a converted engine may have."""
    return _INT8_MIN_COSINE if int8_weights else _FLOAT_MIN_COSINE


def worst_cosine(got: np.ndarray, want: np.ndarray) -> float:
    """The lowest row-wise cosine of two batches of unit vectors (-1 when shapes differ)."""
    if got.shape != want.shape:
        return -1.0
    return float(np.min(np.sum(got * want, axis=1)))


def load_card(model_dir: Path) -> ModelCard:
    """The model card of ``model_dir``; a problem with it is a ``StartupError``."""
    try:
        return read_card(model_dir)
    except ModelCardError as exc:
        raise StartupError(str(exc)) from exc


class _DropSignatureRenameNotes(logging.Filter):
    """Drops TensorFlow's "Function `…` contains input name(s) … which will be renamed to
    …" record. The TensorFlow Lite converter writes the loaded function to a temporary
    SavedModel, and the SavedModel writer (``tensorflow/python/saved_model/
    signature_serialization.py``, through absl's logger at INFO) lists every captured
    variable of the signature in one line: hundreds of names for FaceNet, telling nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "contains input name(s)" not in str(record.msg)


@contextlib.contextmanager
def _without_signature_rename_notes() -> Iterator[None]:
    """Silence that one absl record (nothing else) while the block runs."""
    absl_logger = logging.getLogger("absl")
    note_filter = _DropSignatureRenameNotes()
    absl_logger.addFilter(note_filter)
    try:
        yield
    finally:
        absl_logger.removeFilter(note_filter)


class EmbeddingModel:
    """A loaded SavedModel: ``embed(uint8 N×112×112×3) -> float32 N×D``.

    ``engine``: ``auto`` (``tflite-int8`` on a CPU, the SavedModel on a GPU), ``tflite``,
    ``tflite-int8`` or ``savedmodel``; ``threads``: CPU threads of the TensorFlow Lite
    engines (0: every usable core). ``self.engine`` says which one runs.
    """

    def __init__(
        self,
        model_dir: Path,
        card: ModelCard | None = None,
        engine: Engine = "auto",
        threads: int = 0,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.card = card or load_card(self.model_dir)
        if not (self.model_dir / "saved_model.pb").is_file():
            raise StartupError(f"{self.model_dir} holds no saved_model.pb.")
        import tensorflow as tf  # heavy: imported only when a model is loaded

        self._tf = tf
        try:
            self._loaded = tf.saved_model.load(str(self.model_dir))
        except Exception as exc:  # corrupt or incompatible SavedModel
            raise StartupError(f"Could not load the SavedModel in {self.model_dir}: {exc}") from exc
        signatures = getattr(self._loaded, "signatures", {})
        if SIGNATURE_NAME not in signatures:
            raise StartupError(
                f"SavedModel {self.model_dir} has no {SIGNATURE_NAME!r} signature "
                f"(has {sorted(signatures)})."
            )
        self._fn = signatures[SIGNATURE_NAME]
        _, kwargs = self._fn.structured_input_signature
        if len(kwargs) != 1:
            raise StartupError(
                f"Signature {SIGNATURE_NAME!r} must take exactly one input, takes {sorted(kwargs)}."
            )
        ((self.input_key, spec),) = kwargs.items()
        if spec.dtype != tf.uint8:
            raise StartupError(
                f"Signature input {self.input_key!r} must be uint8, is {spec.dtype}."
            )
        outputs = self._fn.structured_outputs
        if OUTPUT_NAME not in outputs:
            raise StartupError(
                f"Signature {SIGNATURE_NAME!r} must output {OUTPUT_NAME!r}, "
                f"outputs {sorted(outputs)}."
            )
        out_dim = outputs[OUTPUT_NAME].shape[-1]
        if out_dim is not None and int(out_dim) != self.card.embedding_dim:
            raise StartupError(
                f"Model outputs {out_dim}-d embeddings but its card says {self.card.embedding_dim}."
            )
        self._lock = threading.Lock()
        self._runner: Any = None
        self.engine: str = "savedmodel"
        if engine == "auto":
            engine = "savedmodel" if tf.config.list_physical_devices("GPU") else "tflite-int8"
        if engine not in _ENGINES:
            raise ValueError(f"unknown engine {engine!r}")
        if engine != "savedmodel":
            self._use_tflite(threads, engine)

    def to_flatbuffer(self, int8_weights: bool) -> bytes:
        """The loaded SavedModel converted to a TensorFlow Lite flatbuffer (int8 weights,
        activations quantised on the fly, when ``int8_weights``)."""
        tf = self._tf
        # From the loaded function, not the directory: this freezes every variable into a
        # constant (from_saved_model can leave resource reads that run uninitialised and
        # return NaN).
        converter = tf.lite.TFLiteConverter.from_concrete_functions([self._fn], self._loaded)
        if int8_weights:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        with _without_signature_rename_notes():
            flatbuffer: bytes = converter.convert()
        return flatbuffer

    def _use_tflite(self, threads: int, name: str) -> None:
        """Convert the loaded SavedModel to TensorFlow Lite and switch to it if it agrees."""
        tf = self._tf
        int8_weights = name.startswith("tflite-int8")
        floor = agreement_floor(int8_weights)
        t0 = time.perf_counter()
        try:
            flatbuffer = self.to_flatbuffer(int8_weights)
            with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
                warnings.simplefilter("ignore")
                interpreter = tf.lite.Interpreter(
                    model_content=flatbuffer, num_threads=threads or usable_cores()
                )
            runner = interpreter.get_signature_runner(SIGNATURE_NAME)
            probe = probe_batch()
            want = self.embed_savedmodel(probe)
            got = np.asarray(runner(**{self.input_key: probe})[OUTPUT_NAME], dtype=np.float32)
            worst = worst_cosine(got, want)
        except Exception:
            log.exception("TensorFlow Lite conversion failed; serving the SavedModel as it is")
            return
        if not worst >= floor:  # NaN fails too
            log.warning(
                "TensorFlow Lite embeddings differ from the SavedModel's; serving the SavedModel",
                extra={"engine": name, "worst_cosine": worst, "required": floor},
            )
            return
        self._runner, self.engine = runner, name
        log.info(
            "model converted to TensorFlow Lite (XNNPACK)",
            extra={
                "engine": name,
                "seconds": round(time.perf_counter() - t0, 1),
                "worst_cosine_to_savedmodel": worst,
                "flatbuffer_mb": round(len(flatbuffer) / 2**20, 1),
            },
        )

    def embed_savedmodel(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of ``crops`` by the SavedModel itself, whatever engine serves."""
        out = self._fn(**{self.input_key: self._tf.constant(crops)})[OUTPUT_NAME]
        return np.asarray(out.numpy(), dtype=np.float32)

    @property
    def embedding_dim(self) -> int:
        return self.card.embedding_dim

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embed aligned crops (uint8 N×112×112×3) into float32 N×D unit vectors."""
        crops = checked_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        with self._lock:  # neither engine may run two batches at once
            if self._runner is not None:
                out = self._runner(**{self.input_key: crops})[OUTPUT_NAME]
                embeddings = np.array(out, dtype=np.float32)  # a copy: the buffer is reused
            else:
                embeddings = self.embed_savedmodel(crops)
        if embeddings.shape != (len(crops), self.embedding_dim):
            raise RuntimeError(
                f"model returned {embeddings.shape}, expected ({len(crops)}, {self.embedding_dim})"
            )
        return embeddings

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run the graph once per batch size so the first request pays no tracing cost."""
        for n in batch_sizes:
            self.embed(np.zeros((n, *INPUT_SHAPE), dtype=np.uint8))
