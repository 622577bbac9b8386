"""``opener``: a fresh gallery database, on SQLite and on PostgreSQL, for the gallery tests
that must hold on both engines (8-dimensional embeddings, model ``m/1``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pg_testkit import PostgresCluster

from app.gallery.storage import GalleryStorage, open_storage

Opener = Callable[[], GalleryStorage]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new handle (a new connection) on one fresh gallery database."""
    if request.param == "sqlite":
        db = tmp_path / "gallery.sqlite3"
        yield lambda: open_storage(None, db, "m/1", 8)
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    cluster.reset()
    yield lambda: open_storage(cluster.url, tmp_path / "unused.sqlite3", "m/1", 8)
