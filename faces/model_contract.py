"""The contract between training and serving: what an exported model directory holds.

``model_store/<name>/<version>/`` is a SavedModel (``saved_model.pb`` + ``variables/``)
with one signature, ``serving_default``:

    input  ``images``:    uint8   [batch, 112, 112, 3]  aligned RGB crops from ``faces``
    output ``embedding``: float32 [batch, D]            L2-normalised

and beside it ``model_card.json``, whose schema is ``ModelCard``. ``training.export``
writes a ``ModelCard``; the service reads one with ``read_card``. Nothing here imports
TensorFlow or the service.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from faces.align import ALIGNED_SIZE
from faces.pipeline import PREPROCESSING_VERSION

CARD_FILE = "model_card.json"
SIGNATURE_NAME = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "embedding"
INPUT_SHAPE = (ALIGNED_SIZE, ALIGNED_SIZE, 3)

Aggregation = Literal["max", "mean", "centroid"]


class ModelCardError(ValueError):
    """The model directory or its card is missing, unreadable or not for this pipeline."""


class TensorSpec(BaseModel):
    name: str
    dtype: str
    shape: list[int | None]


class Signature(BaseModel):
    name: str = SIGNATURE_NAME
    input: TensorSpec
    output: TensorSpec


class ImpostorTail(BaseModel):
    """Upper tail of the non-mated *identity* score of one probe against one enrolled
    identity holding ``templates`` faces, scored with the card's aggregation.

    ``scores`` ascend; ``exceedance[i]`` = P(score >= scores[i]) measured on
    ``comparisons`` identity-disjoint probe/identity pairs. Beyond the last point the tail
    is a generalised Pareto fit above ``gpd_threshold`` (shape ``gpd_shape``, scale
    ``gpd_scale``), which holds a fraction ``gpd_exceedance`` of the comparisons.
    """

    templates: int = Field(ge=1)
    comparisons: int = Field(ge=1)
    scores: list[float] = Field(min_length=2)
    exceedance: list[float] = Field(min_length=2)
    gpd_threshold: float
    gpd_exceedance: float = Field(gt=0.0, le=1.0)
    gpd_shape: float
    gpd_scale: float = Field(gt=0.0)


class Calibration(BaseModel):
    """What the service needs to derive an open-set threshold for its gallery."""

    aggregation: Aggregation = Field(
        description="How a probe's scores against one identity's faces become one score."
    )
    tails: list[ImpostorTail] = Field(min_length=1)
    source: str = Field(default="", description="Which identity-disjoint data was used.")


class ModelCard(BaseModel):
    """``model_card.json``: the fields the service relies on, plus training's records."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    embedding_dim: int = Field(ge=1)
    preprocessing_version: str
    threshold: float = Field(
        ge=-1.0, le=1.0, description="Pair threshold (verification): FAR 1e-3 on validation."
    )
    threshold_meaning: str = (
        "cosine similarity of L2-normalised embeddings; >= threshold means same person"
    )
    signature: Signature | None = None
    calibration: Calibration | None = None
    metrics: Any = None
    training_data: Any = None
    recipe: Any = None
    config: Any = None
    pretrained: Any = None
    created: str | None = None
    training: Any = None

    @property
    def model_id(self) -> str:
        """What gallery rows record: name and version together."""
        return f"{self.name}/{self.version}"


def serving_signature(embedding_dim: int) -> Signature:
    """The one signature every exported model has."""
    return Signature(
        input=TensorSpec(name=INPUT_NAME, dtype="uint8", shape=[None, *INPUT_SHAPE]),
        output=TensorSpec(name=OUTPUT_NAME, dtype="float32", shape=[None, embedding_dim]),
    )


def write_card(model_dir: Path, card: ModelCard) -> Path:
    """Write ``card`` as ``<model_dir>/model_card.json``."""
    path = Path(model_dir) / CARD_FILE
    path.write_text(card.model_dump_json(indent=2, exclude_none=False), encoding="utf-8")
    return path


def read_card(model_dir: Path) -> ModelCard:
    """Read and check a model card; raises ``ModelCardError`` with a clear message."""
    path = Path(model_dir) / CARD_FILE
    if not Path(model_dir).is_dir():
        raise ModelCardError(
            f"Model directory {model_dir} does not exist; set FACEID_MODEL_DIR to a "
            "model version directory (SavedModel + model_card.json)."
        )
    if not path.is_file():
        raise ModelCardError(f"Model card {path} is missing; refusing to serve an unknown model.")
    try:
        card = ModelCard.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as exc:
        raise ModelCardError(f"Model card {path} is invalid: {exc}") from exc
    if card.preprocessing_version != PREPROCESSING_VERSION:
        raise ModelCardError(
            f"Model {card.model_id} was trained with preprocessing "
            f"{card.preprocessing_version!r} but this service aligns faces with "
            f"{PREPROCESSING_VERSION!r}; its embeddings would not match. "
            "Re-export the model with the current face pipeline or deploy a matching service."
        )
    return card
