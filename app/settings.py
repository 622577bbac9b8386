"""Typed service settings, read from ``FACEID_*`` environment variables.

Every variable and its default is listed in the README's configuration table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

if TYPE_CHECKING:
    from app.gallery.storage.postgres import DbTimeouts

REPO_ROOT = Path(__file__).resolve().parents[1]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
EngineName = Literal["auto", "tflite", "tflite-int8", "tflite-tf", "tflite-int8-tf", "savedmodel"]


class Settings(BaseSettings):
    """Service configuration. Environment variables are ``FACEID_`` + the field name."""

    model_config = SettingsConfigDict(env_prefix="FACEID_", extra="ignore", frozen=True)

    model_dir: Path = Field(
        default=Path("model_store/faceid/2"),
        description="SavedModel version directory (with model_card.json); "
        "a relative path is resolved against the repository root.",
    )
    data_dir: Path = Field(
        default=Path("data"),
        description="Directory of the gallery database (<data_dir>/gallery.sqlite3); "
        "a relative path is resolved against the working directory.",
    )
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated API keys accepted as 'Authorization: Bearer <key>'. "
        "Empty: authentication is off.",
        repr=False,
    )
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1, description="Per-image byte cap.")
    max_pixels: int = Field(default=40_000_000, ge=1, description="Decoded width×height cap.")
    threshold: float | None = Field(
        default=None,
        ge=-1.0,
        le=1.0,
        description="Fixed cosine threshold for /identify and /verify, overriding the "
        "calibrated one. Unset: /identify holds FACEID_TARGET_FPIR for the gallery's size "
        "and /verify uses the model card's pair threshold.",
    )
    target_fpir: float = Field(
        default=0.01,
        gt=0.0,
        lt=1.0,
        description="Share of strangers (people not enrolled) that /identify may name as "
        "someone: the identification threshold is derived from it for the current gallery "
        "size, from the model card's impostor-score tail.",
    )
    calibration: Literal["card", "deployment"] = Field(
        default="card",
        description="Whose impostor-score tail sets the /identify threshold. `card`: the "
        "model card's. `deployment`: one fitted on the gallery's own non-mated scores (each "
        "identity's faces against every other identity) once a collection holds enough "
        'identities and faces (README: "Unknown" that you can trust); the card\'s below that.',
    )
    calibration_check_interval_s: float = Field(
        default=60.0,
        ge=1.0,
        le=86_400.0,
        description="Least seconds between two recomputations of the calibration check on "
        "the enrolled people (/health `population`), run in a background thread after the "
        "gallery changed; never on a request.",
    )
    probe_quality_floor: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="Faces under this quality get identity null with reason low_quality "
        "from /identify instead of a guess.",
    )
    enroll_quality_floor: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Enrolment refuses faces under this quality (422 low_quality); the "
        "default 0 refuses none, because no refusal rule measured paid for itself "
        "(docs/MODEL.md, 'Face quality').",
    )
    enroll_quality_warning: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Enrolment accepts faces from the floor up to this quality with a "
        "low_quality warning in the answer's warnings (docs/MODEL.md, 'Face quality').",
    )
    batch_max_size: int = Field(
        default=32, ge=1, le=1024, description="Faces per model call, at most."
    )
    batch_max_wait_ms: float = Field(
        default=5.0, ge=0.0, le=10_000.0, description="How long a batch waits for more faces."
    )
    detect_workers: int = Field(
        default_factory=lambda: max(1, min(4, os.cpu_count() or 1)),
        ge=1,
        le=64,
        description="Threads decoding, detecting and aligning uploads.",
    )
    min_face_size: int = Field(
        default=40,
        ge=12,
        le=4096,
        description="Smallest face (pixels, in the photo after downscaling to 640 px) the "
        "detector looks for. 20 also finds small background faces, at about 1.6x the "
        "detection time.",
    )
    detector: Literal["lite", "reference"] = Field(
        default="lite",
        description="How MTCNN runs. `lite`: its three networks in TensorFlow Lite (XNNPACK) "
        "and resizing, cropping and box handling in NumPy (same faces, boxes within a pixel "
        "of `reference`, tested; about a third of the CPU). `reference`: mtcnn 1.0.0's "
        "own code (compiled Keras networks, eager TensorFlow ops).",
    )
    enroll_max_images: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Photos one POST /identities/{identity}/faces may carry (several "
        "`image` parts); the request body may be this many times FACEID_MAX_UPLOAD_BYTES.",
    )
    max_faces: int = Field(
        default=20, ge=1, le=100, description="Default faces per /identify photo."
    )
    ann_min_faces: int = Field(
        default=0,
        ge=0,
        description="Gallery size (faces) from which searches go through an approximate "
        "HNSW index (usearch), built in a background thread after startup (exact search "
        "until it has caught up); its candidates are re-scored exactly, so scores stay exact "
        "cosine similarities, but it can miss the best match (recall@1 0.83 at 1M synthetic "
        "faces). 0 (default): always exact (6-9 ms per face at 1M faces on 2 cores).",
    )
    engine: EngineName = Field(
        default="auto",
        description="How the SavedModel runs. `tflite-int8`: converted to TensorFlow "
        "Lite with int8 weights in a short-lived child process (or taken from the engine "
        "cache) and served by the LiteRT interpreter with XNNPACK: the serving process "
        "never loads TensorFlow (~3x less CPU per face than the SavedModel; embeddings "
        "within cosine 0.999 of its own). `tflite`: the same in float32 (embeddings equal "
        "to rounding). `tflite-int8-tf`, `tflite-tf`: the same engines converted and run "
        "by TensorFlow inside the serving process (as before the lean engines; about 1 GB "
        "more memory). `savedmodel`: as it is, in the serving process. Each converted "
        "engine is checked against the SavedModel on a probe batch and dropped if it "
        "disagrees. `auto`: tflite-int8 without a GPU, savedmodel with one.",
    )
    engine_cache_dir: Path | None = Field(
        default=None,
        description="Where the converted engines of `tflite` and `tflite-int8` are kept, "
        "so that a restart with the same model, TensorFlow and LiteRT skips the conversion "
        "(a changed one, or an entry that fails its checksums, is converted again). Unset: "
        "<data_dir>/engine-cache.",
    )
    search_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="Threads one exact search of a large gallery (16,384+ faces) scans "
        "with; 0: every usable core.",
    )
    docs_public: bool = Field(
        default=False,
        description="Serve /docs, /redoc and /openapi.json without a key even when API keys "
        "are configured. Default: they need a key like every route but /health and /metrics.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        le=600.0,
        description="Seconds a client has to send a request's line and headers, from the "
        "moment it connects or starts the request; then 408 and the connection is closed.",
    )
    body_idle_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        le=600.0,
        description="Seconds the service waits for the next piece of a request body; "
        "then 408 and the connection is closed.",
    )
    body_timeout_s: float = Field(
        default=60.0,
        gt=0.0,
        le=3600.0,
        description="Seconds a whole request body may take to arrive; then 408.",
    )
    keep_alive_timeout_s: float = Field(
        default=5.0,
        ge=1.0,
        le=600.0,
        description="Seconds an idle keep-alive connection stays open between requests.",
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Open connections at most; one more is answered 503 and closed.",
    )
    database_url: str | None = Field(
        default=None,
        description="postgresql://user:password@host:port/db: keep the gallery in this "
        "PostgreSQL database, shared by every process and replica that names it. Unset: "
        "the SQLite file <data_dir>/gallery.sqlite3.",
        repr=False,
    )
    db_connect_timeout_s: float = Field(
        default=5.0,
        ge=1.0,
        le=600.0,
        description="Seconds a connection to the PostgreSQL gallery may take to open; "
        "then the request is answered 503 storage_unavailable.",
    )
    db_statement_timeout_s: float = Field(
        default=10.0,
        gt=0.0,
        le=3600.0,
        description="Seconds one PostgreSQL gallery call (enrolment, listing, erasure, the "
        "follower's poll) may take: the server's statement_timeout, and a client-side "
        "deadline one second later that also holds when the server stops answering (a "
        "frozen host): then 503 storage_unavailable and /health says degraded.",
    )
    db_lock_timeout_s: float = Field(
        default=5.0,
        gt=0.0,
        le=3600.0,
        description="Seconds a PostgreSQL gallery write may wait for a lock (another "
        "process's write in progress): the server's lock_timeout; then 503.",
    )
    db_workers: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Threads per process that run gallery database calls (their own pool: "
        "identification never waits behind the database). Calls past them queue, within "
        "the same deadline.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Service processes `python -m app` runs (uvicorn workers on one port); "
        "they share the gallery and follow each other's changes. Each holds its own model "
        "and gallery copy in memory.",
    )
    sync_poll_ms: float = Field(
        default=250.0,
        ge=10.0,
        le=60_000.0,
        description="How often each process polls the gallery's change log for other "
        "processes' enrollments and erasures (PostgreSQL also wakes it at once by "
        "NOTIFY); bounds how stale another process's view can be.",
    )
    change_log_ttl_s: float = Field(
        default=300.0,
        ge=10.0,
        le=30 * 24 * 3600.0,
        description="The gallery's change log is pruned up to the change that every "
        "process following it has applied; a process not heard from for this long (stopped, "
        "suspended, cut off) no longer holds it back and, when it returns, reloads the whole "
        "gallery instead. Bounds the log to what the live processes have not yet applied.",
    )
    keep_aligned_crops: bool = Field(
        default=False,
        description="Keep each enrolled face's aligned 112x112 crop in the gallery, "
        "encrypted with FACEID_CROP_KEY, so that `python -m app.gallery reembed` can move the "
        "gallery to a new model without the original photos. A face crop is biometric "
        "data (README: Privacy). Off: only embeddings are stored.",
    )
    crop_key: SecretStr | None = Field(
        default=None,
        description="URL-safe base64 of 32 random bytes: the AES-256-GCM key that seals kept "
        "crops (needed with FACEID_KEEP_ALIGNED_CROPS, and by `reembed --from-crops`). Make "
        'one with python -c "from app.gallery.crops import new_key; print(new_key())".',
        repr=False,
    )
    log_level: LogLevel = Field(default="INFO", description="Log level of the JSON-lines logs.")
    host: str = Field(default="127.0.0.1", description="Address `python -m app` binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `python -m app` binds.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value

    @field_validator("database_url", "crop_key", mode="before")
    @classmethod
    def _blank_url(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("database_url", mode="after")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("model_dir", mode="after")
    @classmethod
    def _resolve_model_dir(cls, value: Path) -> Path:
        value = value.expanduser()
        return value if value.is_absolute() else (REPO_ROOT / value).resolve()

    @field_validator("data_dir", mode="after")
    @classmethod
    def _resolve_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def gallery_path(self) -> Path:
        return self.data_dir / "gallery.sqlite3"

    @property
    def engine_cache_path(self) -> Path:
        """FACEID_ENGINE_CACHE_DIR, or ``<data_dir>/engine-cache``."""
        if self.engine_cache_dir is None:
            return self.data_dir / "engine-cache"
        return self.engine_cache_dir.expanduser().resolve()

    @property
    def db_timeouts(self) -> DbTimeouts:
        """The PostgreSQL gallery's timeouts (``FACEID_DB_*``)."""
        from app.gallery.storage.postgres import DbTimeouts

        return DbTimeouts(
            connect=self.db_connect_timeout_s,
            statement=self.db_statement_timeout_s,
            lock=self.db_lock_timeout_s,
        )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)
