"""Where the gallery is kept: the storage protocol and its records (``base``), the queries
both engines share (``queries``), the migration loop (``schema``), and the two engines,
SQLite (``sqlite``, the embedded default) and PostgreSQL (``postgres``, shared by many
processes and replicas)."""

from app.gallery.storage.base import (
    DEFAULT_COLLECTION,
    SCHEMA_VERSION,
    Change,
    CollectionSize,
    FaceRecord,
    GalleryRows,
    GalleryStorage,
    KeyRecord,
    StoredFace,
    check_embedding,
    content_hash,
)
from app.gallery.storage.engines import open_storage

__all__ = [
    "DEFAULT_COLLECTION",
    "SCHEMA_VERSION",
    "Change",
    "CollectionSize",
    "FaceRecord",
    "GalleryRows",
    "GalleryStorage",
    "KeyRecord",
    "StoredFace",
    "check_embedding",
    "content_hash",
    "open_storage",
]
