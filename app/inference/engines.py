"""Which engine embeds (and detects) in the service, and opening it.

``FACEID_ENGINE``:

- ``tflite-int8`` (the CPU default) and ``tflite``: the lean engines. The SavedModel is
  converted in a short-lived child process that has TensorFlow (or taken from the engine
  cache, ``engine_cache.py``) and served on the LiteRT interpreter: the serving process
  never imports TensorFlow. The embedding engine is checked on the probe batch against the
  SavedModel's own embeddings (recorded by the converter) before it is used; one that
  disagrees, or that did not convert, leaves the SavedModel serving in this process (with
  TensorFlow, as before).
- ``tflite-int8-tf`` and ``tflite-tf``: the same flatbuffers, converted and run by
  TensorFlow in this process (the engines as they were before the lean ones).
- ``savedmodel``: the SavedModel as it is, in this process (the GPU path).
- ``auto``: ``savedmodel`` when TensorFlow has a GPU to use, else ``tflite-int8``. Whether
  there can be a GPU is first decided without importing TensorFlow (a CUDA or Metal build
  of TensorFlow and a GPU driver present); only then is TensorFlow asked.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from app.domain_errors import StartupError
from app.inference.engine_cache import EngineFiles, installed_version, prepare
from app.inference.model import (
    EmbeddingModel,
    agreement_floor,
    checked_crops,
    probe_batch,
    worst_cosine,
)
from faces.cpu import usable_cores
from faces.litert import new_interpreter
from faces.model_contract import INPUT_SHAPE, OUTPUT_NAME, SIGNATURE_NAME, ModelCard

log = logging.getLogger("faceid.engines")

LEAN_ENGINES = ("tflite", "tflite-int8")


class Embedder(Protocol):
    """What the service needs of an embedding engine."""

    card: ModelCard
    engine: str

    @property
    def embedding_dim(self) -> int: ...

    def embed(self, crops: np.ndarray) -> np.ndarray: ...

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None: ...


class EngineDisagrees(Exception):
    """A converted engine whose probe embeddings are too far from the SavedModel's."""


class LiteEmbeddingModel:
    """A converted embedding model on the LiteRT interpreter: ``embed(uint8
    N×112×112×3) -> float32 N×D``, checked on the probe batch when it is made."""

    def __init__(self, files: EngineFiles, card: ModelCard, threads: int = 0) -> None:
        if files.embedding is None:
            raise ValueError("no embedding flatbuffer")
        if files.embedding_dim != card.embedding_dim:
            raise StartupError(
                f"Model outputs {files.embedding_dim}-d embeddings but its card says "
                f"{card.embedding_dim}."
            )
        self.card = card
        self.engine = files.engine
        self.input_key = files.input_key
        self._lock = threading.Lock()
        interpreter = new_interpreter(files.embedding, threads or usable_cores(), "litert")
        self._runner = interpreter.get_signature_runner(SIGNATURE_NAME)
        floor = agreement_floor(files.engine == "tflite-int8")
        self.worst_cosine = worst_cosine(self.embed(probe_batch()), files.probe_reference)
        if not self.worst_cosine >= floor:  # NaN fails too
            raise EngineDisagrees(
                f"worst probe cosine to the SavedModel {self.worst_cosine:.6f}, required {floor}"
            )

    @property
    def embedding_dim(self) -> int:
        return self.card.embedding_dim

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embed aligned crops (uint8 N×112×112×3) into float32 N×D unit vectors."""
        crops = checked_crops(crops)
        if len(crops) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        with self._lock:  # one interpreter: one batch at a time
            out = self._runner(**{self.input_key: crops})[OUTPUT_NAME]
            embeddings = np.array(out, dtype=np.float32)  # a copy: the buffer is reused
        if embeddings.shape != (len(crops), self.embedding_dim):
            raise RuntimeError(
                f"model returned {embeddings.shape}, expected ({len(crops)}, {self.embedding_dim})"
            )
        return embeddings

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run once per batch size so the first request pays no tensor allocation."""
        for n in batch_sizes:
            self.embed(np.zeros((n, *INPUT_SHAPE), dtype=np.uint8))


@dataclass(frozen=True)
class Engines:
    """The embedding engine, and the detector's flatbuffers when they were converted
    elsewhere (None: the detector converts its own, with TensorFlow)."""

    model: Embedder
    lite_nets: dict[str, bytes] | None


def gpu_present() -> bool:
    """Whether TensorFlow has a GPU to use here, importing TensorFlow only when the
    installed build and the machine could have one."""
    tensorflow = installed_version("tensorflow", "tensorflow-macos")
    metal = installed_version("tensorflow-metal") != "absent"
    if tensorflow == "absent" or os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    nvidia = Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()
    if not (nvidia or metal):
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def resolve_engine(engine: str) -> str:
    """The engine ``auto`` stands for here; any other name as it is."""
    if engine != "auto":
        return engine
    return "savedmodel" if gpu_present() else "tflite-int8"


def open_engines(
    model_dir: Path,
    card: ModelCard,
    engine: str = "auto",
    threads: int = 0,
    cache_dir: Path | None = None,
) -> Engines:
    """Open the embedding engine ``engine`` names (``FACEID_ENGINE``), with the detector's
    flatbuffers for the lean engines. Raises ``StartupError``."""
    name = resolve_engine(engine)
    if name in LEAN_ENGINES and importlib.util.find_spec("ai_edge_litert") is None:
        log.warning(
            "ai-edge-litert is not installed; converting and serving with TensorFlow instead",
            extra={"engine": name},
        )
        name = f"{name}-tf"
    if name not in LEAN_ENGINES:
        return Engines(EmbeddingModel(model_dir, card, engine=name, threads=threads), None)  # type: ignore[arg-type]
    files = prepare(model_dir, name, cache_dir)
    problem = files.embedding_problem
    if files.embedding is not None:
        try:
            model = LiteEmbeddingModel(files, card, threads)
        except EngineDisagrees as exc:
            problem = str(exc)
        else:
            log.info(
                "serving on LiteRT",
                extra={
                    "engine": name,
                    "converted_now": files.converted,
                    "worst_cosine_to_savedmodel": model.worst_cosine,
                    "flatbuffer_mb": round(len(files.embedding) / 2**20, 1),
                },
            )
            return Engines(model, files.nets)
    log.warning(
        "the converted engine cannot serve; serving the SavedModel (TensorFlow in this process)",
        extra={"engine": name, "problem": problem},
    )
    fallback = EmbeddingModel(model_dir, card, engine="savedmodel", threads=threads)
    return Engines(fallback, files.nets)
