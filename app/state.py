"""What one running service holds, and how it comes to hold it.

Startup has two phases. ``preflight`` (synchronous, fast, before TensorFlow is imported)
reads the model card and opens the gallery database, checking that its embeddings were
made by this model: any problem is a ``StartupError`` that stops the process with a clear
message. ``build`` (in a worker thread, while ``/health`` answers 503 ``starting``) loads
and warms up the model and the face detector and fills the in-memory index; the finished
``Components`` are swapped into ``ServiceState`` in one assignment, so a request sees
either nothing (503) or everything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from app.calibration_monitor import CalibrationMonitor
from app.domain_errors import StartupError
from app.gallery.calibration_check import PopulationCheck
from app.gallery.crops import CropKeyError, CropVault
from app.gallery.service import GalleryService
from app.gallery.storage import GalleryStorage, open_storage
from app.inference.batcher import MicroBatcher
from app.inference.engines import Embedder, open_engines
from app.inference.model import load_card
from app.keys import KeyRing
from app.metrics import Metrics
from app.recognition import MatchPolicy, Recognizer
from app.settings import Settings
from faces import FaceDetector, FacePipeline
from faces.model_contract import ModelCard

log = logging.getLogger("faceid.state")


@dataclass(frozen=True)
class Preflight:
    """What the fast startup checks produced: the card, the opened gallery database and,
    with FACEID_KEEP_ALIGNED_CROPS, the vault that seals kept crops."""

    card: ModelCard
    store: GalleryStorage
    vault: CropVault | None = None


def crop_vault(settings: Settings, required: bool) -> CropVault | None:
    """The vault for FACEID_CROP_KEY (None without a key unless ``required``); raises
    ``StartupError`` for a missing or malformed key."""
    if settings.crop_key is None:
        if required:
            raise StartupError(
                "FACEID_KEEP_ALIGNED_CROPS is on but FACEID_CROP_KEY is not set: kept crops "
                "are stored encrypted and need a key (README: Privacy)."
            )
        return None
    try:
        return CropVault.from_setting(settings.crop_key.get_secret_value())
    except CropKeyError as exc:
        raise StartupError(str(exc)) from exc


def preflight(settings: Settings) -> Preflight:
    """Read the model card and open the gallery; raises ``StartupError``."""
    card = load_card(settings.model_dir)
    vault = crop_vault(settings, required=True) if settings.keep_aligned_crops else None
    store = open_storage(
        settings.database_url,
        settings.gallery_path,
        card.model_id,
        card.embedding_dim,
        settings.db_timeouts,
    )
    log.info(
        "model card and gallery checked",
        extra={
            "model": card.model_id,
            "model_dir": str(settings.model_dir),
            "gallery": store.location,
        },
    )
    return Preflight(card, store, vault)


@dataclass(frozen=True)
class Components:
    """Everything a ready service uses; built once at startup."""

    card: ModelCard
    model: Embedder
    gallery: GalleryService
    batcher: MicroBatcher
    recognizer: Recognizer
    detect_pool: ThreadPoolExecutor
    db_pool: ThreadPoolExecutor | None = None
    search_pool: ThreadPoolExecutor | None = None
    monitor: CalibrationMonitor | None = None

    async def close(self) -> None:
        if self.monitor is not None:
            await asyncio.to_thread(self.monitor.close)
        await self.batcher.stop()
        for pool in (self.detect_pool, self.search_pool, self.db_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self.gallery.close()


def face_pipeline(settings: Settings, lite_nets: dict[str, bytes] | None = None) -> FacePipeline:
    """The face pipeline as the settings configure it (detector backend, smallest face,
    pixel cap): the service and the gallery commands build theirs here. ``lite_nets``:
    the lean engines' detector flatbuffers (``open_engines``), run on LiteRT."""
    detector = FaceDetector(
        min_face_size=settings.min_face_size, backend=settings.detector, lite_nets=lite_nets
    )
    return FacePipeline(detector, max_pixels=settings.max_pixels)


def open_model(settings: Settings, card: ModelCard) -> tuple[Embedder, dict[str, bytes] | None]:
    """The embedding engine FACEID_ENGINE names, and the detector flatbuffers the lean
    engines bring (``app.inference.engines``)."""
    engines = open_engines(
        settings.model_dir, card, engine=settings.engine, cache_dir=settings.engine_cache_path
    )
    return engines.model, engines.lite_nets


def _load(
    settings: Settings, checked: Preflight, pipeline: FacePipeline | None
) -> tuple[Embedder, FacePipeline, GalleryService]:
    t0 = time.perf_counter()
    card = checked.card
    model, lite_nets = open_model(settings, card)
    model.warm_up(tuple(sorted({1, settings.batch_max_size})))
    if pipeline is None:
        pipeline = face_pipeline(settings, lite_nets)
    rng = np.random.default_rng(0)
    pipeline.faces_in_pixels(np.zeros((160, 160, 3), dtype=np.uint8))
    pipeline.faces_in_pixels(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8))
    gallery = GalleryService.open(
        checked.store,
        ann_min_faces=settings.ann_min_faces,
        search_threads=settings.search_threads,
        vault=checked.vault,
    )
    gallery.follower_ttl_s = settings.change_log_ttl_s
    gallery.start_sync(settings.sync_poll_ms / 1000)  # follow other processes' changes
    log.info(
        "model loaded and warmed up",
        extra={
            "model": card.model_id,
            "embedding_dim": card.embedding_dim,
            "engine": model.engine,
            "gallery_faces": gallery.faces,
            "gallery_identities": gallery.identities,
            "seconds": round(time.perf_counter() - t0, 3),
        },
    )
    return model, pipeline, gallery


async def build(
    settings: Settings,
    metrics: Metrics,
    checked: Preflight,
    pipeline: FacePipeline | None,
    keyring: KeyRing | None = None,
) -> Components:
    """Load, warm up and wire every component (model loading runs in a worker thread);
    the gallery follower keeps ``keyring`` in step with the database's keys."""
    model, ready_pipeline, gallery = await asyncio.to_thread(_load, settings, checked, pipeline)
    if keyring is not None:
        await asyncio.to_thread(gallery.follow_keys, keyring)
    detect_pool = ThreadPoolExecutor(
        max_workers=settings.detect_workers, thread_name_prefix="faceid-detect"
    )
    batcher = MicroBatcher(
        model.embed,
        max_size=settings.batch_max_size,
        max_wait_ms=settings.batch_max_wait_ms,
        observer=metrics.observe_batch,
        # no waiting for companions while no other upload is being detected
        more_coming=lambda: recognizer.detecting > 0,
    )
    batcher.start()
    # Gallery database calls and identification searches each have their own threads: a
    # database that stops answering holds at most FACEID_DB_WORKERS threads (each released
    # by its deadline) and never delays a search.
    db_pool = ThreadPoolExecutor(max_workers=settings.db_workers, thread_name_prefix="faceid-db")
    search_pool = ThreadPoolExecutor(
        max_workers=max(2, min(8, os.cpu_count() or 1)), thread_name_prefix="faceid-search"
    )
    timeouts = settings.db_timeouts
    gallery.write_wait_s = timeouts.call
    db_call_s = 3 * timeouts.call + timeouts.connect + 1.0
    recognizer = Recognizer(
        settings=settings,
        metrics=metrics,
        pipeline=ready_pipeline,
        batcher=batcher,
        gallery=gallery,
        policy=MatchPolicy(checked.card, settings),
        detect_pool=detect_pool,
        db_pool=db_pool,
        search_pool=search_pool,
        # once started, a call waits for this process's other writes, then for the
        # connection, connects and runs its statement, each bounded; it may queue for one
        # more deadline behind other calls before it starts, or not start at all
        db_call_s=db_call_s,
        db_wait_s=db_call_s + timeouts.call,
    )
    monitor = CalibrationMonitor(
        gallery,
        recognizer.policy,
        settings.calibration_check_interval_s,
        deployment=settings.calibration == "deployment",
    )
    monitor.start()
    return Components(
        checked.card,
        model,
        gallery,
        batcher,
        recognizer,
        detect_pool,
        db_pool,
        search_pool,
        monitor,
    )


class ServiceState:
    """The service's settings, metrics and — once ready — its ``Components``."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.keyring = KeyRing(settings.api_keys)
        self.components: Components | None = None
        self.failed: str | None = None
        metrics.track_gallery(
            lambda: float(self.components.gallery.faces if self.components else 0),
            lambda: float(self.components.gallery.identities if self.components else 0),
            lambda: float(
                sum(1 for s in self.components.gallery.collection_sizes() if s.faces)
                if self.components
                else 0
            ),
        )
        metrics.target_fpir.set(settings.target_fpir)
        metrics.track_population(self.population_check)

    def population_check(self) -> PopulationCheck | None:
        """The last calibration check of the default collection (None: not yet)."""
        components = self.components
        monitor = components.monitor if components is not None else None
        result = monitor.result() if monitor is not None else None
        return result.check if result is not None else None

    @property
    def ready(self) -> bool:
        return self.components is not None

    def set_ready(self, components: Components) -> None:
        self.components = components
        self.metrics.ready.set(1)
        log.info("ready")

    async def close(self) -> None:
        components, self.components = self.components, None
        self.metrics.ready.set(0)
        if components is not None:
            await components.close()
