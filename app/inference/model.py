"""Load a model version directory (SavedModel + ``model_card.json``) and embed faces.

The directory is what TF Serving serves: ``saved_model.pb`` and ``variables/`` directly
inside it, signature ``serving_default`` taking a batch of aligned 112×112×3 uint8 faces
(its input key is read from the signature) and returning ``embedding``: L2-normalised
float32 [N, D]. The card beside it must name the face pipeline's
``PREPROCESSING_VERSION``; anything else refuses to start with a clear message.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.faces import ALIGNED_SIZE, PREPROCESSING_VERSION

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

log = logging.getLogger("faceid.model")

CARD_FILE = "model_card.json"
SIGNATURE = "serving_default"
OUTPUT_KEY = "embedding"


class StartupError(RuntimeError):
    """A configuration problem that must stop the service from starting."""


class ModelCard(BaseModel):
    """The fields of ``model_card.json`` the service relies on (others are kept)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    embedding_dim: int = Field(ge=1)
    preprocessing_version: str
    threshold: float = Field(ge=-1.0, le=1.0)
    metrics: Any = None
    training_data: Any = None
    recipe: Any = None
    pretrained: Any = None

    @property
    def model_id(self) -> str:
        """What gallery rows record: name and version together."""
        return f"{self.name}/{self.version}"


def read_card(model_dir: Path) -> ModelCard:
    """Read and check the model card; raises StartupError with a clear message."""
    path = Path(model_dir) / CARD_FILE
    if not Path(model_dir).is_dir():
        raise StartupError(
            f"Model directory {model_dir} does not exist; set FACEID_MODEL_DIR to a "
            "model version directory (SavedModel + model_card.json)."
        )
    if not path.is_file():
        raise StartupError(f"Model card {path} is missing; refusing to serve an unknown model.")
    try:
        card = ModelCard.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as exc:
        raise StartupError(f"Model card {path} is invalid: {exc}") from exc
    if card.preprocessing_version != PREPROCESSING_VERSION:
        raise StartupError(
            f"Model {card.model_id} was trained with preprocessing "
            f"{card.preprocessing_version!r} but this service aligns faces with "
            f"{PREPROCESSING_VERSION!r}; its embeddings would not match. "
            "Re-export the model with the current face pipeline or deploy a matching service."
        )
    return card


class EmbeddingModel:
    """A loaded SavedModel: ``embed(uint8 N×112×112×3) -> float32 N×D``."""

    def __init__(self, model_dir: Path, card: ModelCard | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.card = card or read_card(self.model_dir)
        if not (self.model_dir / "saved_model.pb").is_file():
            raise StartupError(f"{self.model_dir} holds no saved_model.pb.")
        import tensorflow as tf  # heavy: imported only when a model is loaded

        self._tf = tf
        try:
            self._loaded = tf.saved_model.load(str(self.model_dir))
        except Exception as exc:  # corrupt or incompatible SavedModel
            raise StartupError(f"Could not load the SavedModel in {self.model_dir}: {exc}") from exc
        signatures = getattr(self._loaded, "signatures", {})
        if SIGNATURE not in signatures:
            raise StartupError(
                f"SavedModel {self.model_dir} has no {SIGNATURE!r} signature "
                f"(has {sorted(signatures)})."
            )
        self._fn = signatures[SIGNATURE]
        _, kwargs = self._fn.structured_input_signature
        if len(kwargs) != 1:
            raise StartupError(
                f"Signature {SIGNATURE!r} must take exactly one input, takes {sorted(kwargs)}."
            )
        ((self.input_key, spec),) = kwargs.items()
        if spec.dtype != tf.uint8:
            raise StartupError(
                f"Signature input {self.input_key!r} must be uint8, is {spec.dtype}."
            )
        outputs = self._fn.structured_outputs
        if OUTPUT_KEY not in outputs:
            raise StartupError(
                f"Signature {SIGNATURE!r} must output {OUTPUT_KEY!r}, outputs {sorted(outputs)}."
            )
        out_dim = outputs[OUTPUT_KEY].shape[-1]
        if out_dim is not None and int(out_dim) != self.card.embedding_dim:
            raise StartupError(
                f"Model outputs {out_dim}-d embeddings but its card says {self.card.embedding_dim}."
            )
        self._lock = threading.Lock()

    @property
    def embedding_dim(self) -> int:
        return self.card.embedding_dim

    @property
    def version(self) -> str:
        return self.card.version

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embed aligned crops (uint8 N×112×112×3) into float32 N×D unit vectors."""
        crops = np.asarray(crops)
        expected = (ALIGNED_SIZE, ALIGNED_SIZE, 3)
        if crops.ndim != 4 or crops.shape[1:] != expected or crops.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 N×{ALIGNED_SIZE}×{ALIGNED_SIZE}×3, got {crops.dtype} {crops.shape}"
            )
        if len(crops) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        with self._lock:
            out = self._fn(**{self.input_key: self._tf.constant(crops)})[OUTPUT_KEY]
        embeddings = np.asarray(out.numpy(), dtype=np.float32)
        if embeddings.shape != (len(crops), self.embedding_dim):
            raise RuntimeError(
                f"model returned {embeddings.shape}, expected ({len(crops)}, {self.embedding_dim})"
            )
        return embeddings

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run the graph once per batch size so the first request pays no tracing cost."""
        for n in batch_sizes:
            self.embed(np.zeros((n, ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8))
