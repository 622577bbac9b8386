"""The service's face pipeline, model and enrolment rule, outside the service.

``python -m app.gallery`` enrols and re-embeds with this: the same ``FacePipeline``
(decode, detect, align, quality), the same engine selection (``app.state.open_model``) and the
same ``MatchPolicy.enrollable`` rule as ``POST /identities/{identity}/faces``, configured
by the same ``FACEID_*`` settings, so a face enrolled from the command line is the face the
HTTP route would have stored.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.inference.model import load_card
from app.recognition import MatchPolicy
from app.settings import Settings
from app.state import face_pipeline, open_model
from faces import AlignedFace

log = logging.getLogger("faceid.gallery.offline")


class OfflineEmbedder:
    """Faces of photo bytes and embeddings of crops, as the service makes them."""

    def __init__(self, settings: Settings, model_dir: Path | None = None) -> None:
        model_dir = model_dir or settings.model_dir
        self.card = load_card(model_dir)
        model_settings = settings.model_copy(update={"model_dir": model_dir})
        self.model, lite_nets = open_model(model_settings, self.card)
        self.pipeline = face_pipeline(settings, lite_nets)
        self.policy = MatchPolicy(self.card, settings)
        self.batch_size = settings.batch_max_size
        self.pool = ThreadPoolExecutor(
            max_workers=settings.detect_workers, thread_name_prefix="faceid-gallery-detect"
        )
        log.info("model loaded", extra={"model": self.card.model_id, "engine": self.model.engine})

    def faces(self, data: bytes) -> list[AlignedFace]:
        """Every face of a photo, largest first (raises ``ImageError``)."""
        return self.pipeline.faces_in_bytes(data)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """Embeddings (float32 N×D) of aligned crops, ``batch_max_size`` at a time."""
        if not crops:
            return np.zeros((0, self.card.embedding_dim), dtype=np.float32)
        stacked = np.stack(crops)
        return np.concatenate(
            [
                self.model.embed(stacked[i : i + self.batch_size])
                for i in range(0, len(stacked), self.batch_size)
            ]
        )

    def close(self) -> None:
        """Stop the detection threads."""
        self.pool.shutdown(wait=True, cancel_futures=True)
