"""Opening the gallery database that the settings name: one of the two engines."""

from __future__ import annotations

from pathlib import Path

from app.gallery.storage.base import GalleryStorage
from app.gallery.storage.postgres import DbTimeouts, PostgresStore
from app.gallery.storage.sqlite import GalleryStore


def open_storage(
    database_url: str | None,
    sqlite_path: Path,
    model_version: str,
    embedding_dim: int,
    timeouts: DbTimeouts | None = None,
) -> GalleryStorage:
    """PostgreSQL when ``database_url`` is set, else the SQLite file ``sqlite_path``;
    raises StartupError when it cannot be opened, migrated or holds another model's faces.
    ``timeouts`` bound PostgreSQL's connects, statements and lock waits."""
    if database_url:
        return PostgresStore(database_url, model_version, embedding_dim, timeouts)
    return GalleryStore(sqlite_path, model_version, embedding_dim)
