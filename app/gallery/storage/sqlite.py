"""SQLite gallery store: embeddings and metadata only, never photos.

The tables are described in ``app.gallery.storage.base`` and queried by
``app.gallery.storage.queries.SqlGalleryStore``; this module holds the SQLite connection,
locking and schema. The database runs in WAL mode with ``synchronous=FULL``; every
enrollment and deletion is one transaction (``BEGIN IMMEDIATE``: one writer at a time,
across processes too), committed before the API answers, so it survives a restart, a
``kill -9`` and a power cut, and several processes (``FACEID_WORKERS``) can share the file.

Rows record the model that made them; opening a gallery with another model refuses to
start rather than mixing incomparable embeddings.

Schema versions: older files (version 1: ``PRAGMA user_version=1``, faces only; version 2)
are migrated in place at startup to ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from app.domain_errors import StartupError, StorageUnavailable
from app.gallery.storage.base import SCHEMA_VERSION, FaceRecord, GalleryRows
from app.gallery.storage.queries import SqlGalleryStore, Tx
from app.gallery.storage.schema import api_keys_table, migrate, v5_tables

__all__ = ["SCHEMA_VERSION", "FaceRecord", "GalleryRows", "GalleryStore"]

# MIGRATIONS[v] takes a schema of version v to version v + 1.
MIGRATIONS: dict[int, list[str]] = {
    0: [
        """CREATE TABLE IF NOT EXISTS faces (
            face_id       TEXT PRIMARY KEY,
            identity      TEXT NOT NULL,
            embedding     BLOB NOT NULL,
            model_version TEXT NOT NULL,
            created_at    TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS faces_identity ON faces (identity, created_at)",
    ],
    1: [
        "ALTER TABLE faces ADD COLUMN content_hash TEXT",
        """CREATE TABLE changes (
            seq     INTEGER PRIMARY KEY AUTOINCREMENT,
            op      TEXT NOT NULL CHECK (op IN ('add', 'remove')),
            face_id TEXT NOT NULL
        )""",
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version (version) VALUES (0)",
    ],
    2: [
        "ALTER TABLE faces ADD COLUMN crop BLOB",
        "CREATE INDEX IF NOT EXISTS faces_content_hash ON faces (content_hash)",
    ],
    3: [
        "ALTER TABLE faces ADD COLUMN collection TEXT NOT NULL DEFAULT 'default'",
        "CREATE INDEX faces_collection ON faces (collection, identity, created_at)",
        api_keys_table("INTEGER"),
    ],
    4: v5_tables("INTEGER", "REAL"),
}


def _record_version(tx: Tx, version: int) -> None:
    if version >= 2:  # schema_version exists from version 2 on
        tx.run("UPDATE schema_version SET version = ?", (version,))
    tx.run(f"PRAGMA user_version={version}")


class _SqliteTx:
    """A transaction's cursor, as ``app.gallery.storage.queries.Tx``."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self._cur = cur

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._cur.execute(sql, tuple(params)).fetchall()

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._cur.execute(sql, tuple(params)).rowcount


class GalleryStore(SqlGalleryStore):
    """A thread-safe handle on the SQLite gallery (one connection, one lock)."""

    engine = "sqlite"

    def __init__(self, path: Path, model_version: str, embedding_dim: int) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.model_version = model_version
        self.embedding_dim = embedding_dim
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            # Erased embeddings and crops are overwritten with zeros, not left in free pages.
            self._conn.execute("PRAGMA secure_delete=ON")
            self._migrate()
        except (sqlite3.DatabaseError, StorageUnavailable) as exc:
            raise StartupError(f"Cannot open the gallery database {self.path}: {exc}") from exc
        self.check_model_version()

    def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION, in one transaction (concurrent starters wait)."""
        with self._transaction(write=True) as tx:
            has_table = tx.rows(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            )
            if has_table:
                version = int(tx.rows("SELECT version FROM schema_version")[0][0])
            else:
                version = int(tx.rows("PRAGMA user_version")[0][0])
            migrate(tx, version, MIGRATIONS, _record_version, f"Gallery {self.path}")

    # ----------------------------------------------------------- engine hooks
    @contextmanager
    def _transaction(self, write: bool) -> Iterator[_SqliteTx]:
        """BEGIN IMMEDIATE (a writer: one at a time, across processes) or BEGIN (a read
        snapshot) … COMMIT, or ROLLBACK on error; under the connection's lock."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield _SqliteTx(cur)
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                else:
                    cur.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise StorageUnavailable(f"gallery database {self.path}: {exc}") from exc
            finally:
                cur.close()

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.OperationalError as exc:
                raise StorageUnavailable(f"gallery database {self.path}: {exc}") from exc

    def _after_erasure(self) -> None:
        """Checkpoint and truncate the WAL so erased rows leave no copy in it."""
        # Busy (another process reading): the next erasure's checkpoint retries.
        with self._lock, suppress(sqlite3.OperationalError):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ---------------------------------------------------------------- extras
    def load_all(self) -> GalleryRows:
        """Every stored face, for building the in-memory index."""
        return self.snapshot()[0]

    def wait_for_changes(self, timeout: float) -> None:
        """SQLite has no notifications: the caller polls every ``timeout`` seconds."""
        del timeout  # the caller's stop event does the waiting

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
