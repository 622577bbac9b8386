"""Everything one running service holds: settings, model, face pipeline, batcher, gallery.

Startup has two phases. ``preflight`` (synchronous, fast) reads the model card, checks its
preprocessing version, opens the gallery and checks its model version: any problem is a
``StartupError`` that stops the process with a clear message. ``load`` (in a worker
thread, while ``/health`` answers 503 ``starting``) loads the SavedModel and the face
detector, fills the in-memory index from the database and warms both models up; only
then does the service report ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from app.faces import AlignedFace, FacePipeline
from app.gallery.service import GalleryService
from app.gallery.store import GalleryStore
from app.inference.batcher import MicroBatcher
from app.inference.model import EmbeddingModel, ModelCard, StartupError, read_card
from app.metrics import Metrics
from app.settings import Settings

log = logging.getLogger("faceid.state")


class ServiceState:
    """The service's components and its readiness."""

    def __init__(
        self, settings: Settings, metrics: Metrics, pipeline: FacePipeline | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pipeline = pipeline
        self.card: ModelCard | None = None
        self.store: GalleryStore | None = None
        self.model: EmbeddingModel | None = None
        self.gallery: GalleryService | None = None
        self.batcher: MicroBatcher | None = None
        self.ready = False
        self.failed: str | None = None
        self._detect_pool: ThreadPoolExecutor | None = None
        metrics.track_gallery(
            lambda: float(self.gallery.faces if self.gallery else 0),
            lambda: float(self.gallery.identities if self.gallery else 0),
        )

    # --------------------------------------------------------------- startup
    def preflight(self) -> None:
        """Fast checks that must pass before serving (raise StartupError)."""
        card = read_card(self.settings.model_dir)
        self.card = card
        self.store = GalleryStore(self.settings.gallery_path, card.model_id, card.embedding_dim)
        log.info(
            "model card and gallery checked",
            extra={
                "model": card.model_id,
                "model_dir": str(self.settings.model_dir),
                "gallery": str(self.settings.gallery_path),
            },
        )

    def _load_blocking(self) -> None:
        assert self.card is not None and self.store is not None
        t0 = time.perf_counter()
        model = EmbeddingModel(self.settings.model_dir, self.card, engine=self.settings.engine)
        model.warm_up(tuple(sorted({1, self.settings.batch_max_size})))
        if self.pipeline is None:
            from app.faces import FaceDetector

            detector = FaceDetector(min_face_size=self.settings.min_face_size)
            self.pipeline = FacePipeline(detector, max_pixels=self.settings.max_pixels)
        rng = np.random.default_rng(0)
        self.pipeline.faces_in_pixels(np.zeros((160, 160, 3), dtype=np.uint8))
        self.pipeline.faces_in_pixels(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8))
        gallery = GalleryService.open(
            self.store,
            ann_min_faces=self.settings.ann_min_faces,
            search_threads=self.settings.search_threads,
        )
        self.model, self.gallery = model, gallery
        log.info(
            "model loaded and warmed up",
            extra={
                "model": self.card.model_id,
                "embedding_dim": self.card.embedding_dim,
                "input_key": model.input_key,
                "gallery_faces": gallery.faces,
                "gallery_identities": gallery.identities,
                "seconds": round(time.perf_counter() - t0, 3),
            },
        )

    async def load(self) -> None:
        """Load and warm up everything, then mark ready (sets ``failed`` on error)."""
        try:
            await asyncio.to_thread(self._load_blocking)
            assert self.model is not None
            self._detect_pool = ThreadPoolExecutor(
                max_workers=self.settings.detect_workers, thread_name_prefix="faceid-detect"
            )
            self.batcher = MicroBatcher(
                self.model.embed,
                max_size=self.settings.batch_max_size,
                max_wait_ms=self.settings.batch_max_wait_ms,
                observer=self.metrics.observe_batch,
            )
            self.batcher.start()
        except Exception as exc:
            self.failed = str(exc) if isinstance(exc, StartupError) else repr(exc)
            log.critical("startup failed: %s", self.failed, exc_info=exc)
            raise
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready")

    async def close(self) -> None:
        self.ready = False
        self.metrics.ready.set(0)
        if self.batcher is not None:
            await self.batcher.stop()
        if self._detect_pool is not None:
            self._detect_pool.shutdown(wait=False, cancel_futures=True)
        if self.gallery is not None:
            self.gallery.index.close()  # stops a background approximate-index build
        if self.store is not None:
            self.store.close()

    # ------------------------------------------------------------- requests
    @property
    def threshold(self) -> float:
        if self.settings.threshold is not None:
            return self.settings.threshold
        assert self.card is not None
        return self.card.threshold

    @property
    def model_version(self) -> str:
        assert self.card is not None
        return self.card.version

    def _faces_blocking(self, data: bytes, max_faces: int | None) -> list[AlignedFace]:
        assert self.pipeline is not None
        t0 = time.perf_counter()
        faces = self.pipeline.faces_in_bytes(
            data, max_faces=max_faces, max_pixels=self.settings.max_pixels
        )
        self.metrics.detect_seconds.observe(time.perf_counter() - t0)
        return faces

    async def faces(self, data: bytes, max_faces: int | None = None) -> list[AlignedFace]:
        """Decode, detect and align in the detection pool; raises ImageError."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._detect_pool, self._faces_blocking, data, max_faces)

    async def embed(self, faces: list[AlignedFace]) -> np.ndarray:
        """Embeddings (float32 N×D) of aligned faces, through the micro-batcher."""
        assert self.batcher is not None
        if not faces:
            assert self.card is not None
            return np.zeros((0, self.card.embedding_dim), dtype=np.float32)
        return await self.batcher.embed(np.stack([f.crop for f in faces]))
