"""SQLite gallery store: embeddings and metadata only, never photos.

One row per enrolled face: ``face_id`` (uuid), ``identity``, ``embedding`` (float32 blob),
``model_version``, ``created_at`` and a nullable ``content_hash``; plus the change log
(``app.gallery.storage``). The database runs in WAL mode with ``synchronous=FULL``; every
enrollment and deletion is one transaction (``BEGIN IMMEDIATE``: one writer at a time,
across processes too), committed before the API answers, so it survives a restart, a
``kill -9`` and a power cut, and several processes (``FACEID_WORKERS``) can share the file.

Rows record the model that made them; opening a gallery with another model refuses to
start rather than mixing incomparable embeddings.

Schema versions: files of version 1 (``PRAGMA user_version=1``, faces only) are migrated in
place at startup to version 2 (``content_hash``, ``changes``, ``schema_version``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import StartupError
from app.gallery.storage import (
    SCHEMA_VERSION,
    Change,
    FaceRecord,
    GalleryRows,
    StorageUnavailable,
    check_embedding,
)

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
}


class GalleryStore:
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
            # Erased embeddings are overwritten with zeros, not left in free pages.
            self._conn.execute("PRAGMA secure_delete=ON")
            self._migrate()
        except (sqlite3.DatabaseError, StorageUnavailable) as exc:
            raise StartupError(f"Cannot open the gallery database {self.path}: {exc}") from exc
        self.check_model_version()

    def _migrate(self) -> None:
        """Bring the schema to SCHEMA_VERSION, in one transaction (concurrent starters wait)."""
        with self._transaction() as cur:
            has_table = cur.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if has_table:
                version = int(cur.execute("SELECT version FROM schema_version").fetchone()[0])
            else:
                version = int(cur.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StartupError(
                    f"Gallery {self.path} has schema version {version}; this service "
                    f"reads versions up to {SCHEMA_VERSION}: run a newer release."
                )
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    cur.execute(statement)
                version += 1
                if version >= 2:  # schema_version exists from version 2 on
                    cur.execute("UPDATE schema_version SET version = ?", (version,))
                cur.execute(f"PRAGMA user_version={version}")

    # ------------------------------------------------------------ internals
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE … COMMIT (or ROLLBACK on error), under the lock."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                else:
                    cur.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise StorageUnavailable(f"gallery database {self.path}: {exc}") from exc
            finally:
                cur.close()

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise StorageUnavailable(f"gallery database {self.path}: {exc}") from exc

    # --------------------------------------------------------------- checks
    def check_model_version(self) -> None:
        """Refuse a gallery whose rows were made by another model."""
        rows = self._query(
            "SELECT model_version, COUNT(*) FROM faces GROUP BY model_version "
            "ORDER BY COUNT(*) DESC"
        )
        others = [(str(v), int(n)) for v, n in rows if v != self.model_version]
        if others:
            found = ", ".join(f"{n} faces from model {v!r}" for v, n in others)
            raise StartupError(
                f"The gallery {self.path} holds {found}, but the loaded model is "
                f"{self.model_version!r}: embeddings of different models cannot be compared. "
                "Serve the model that made the gallery, point FACEID_DATA_DIR at another "
                "directory, or re-enroll the people with the new model."
            )

    def ping(self) -> None:
        """Raise StorageUnavailable when the file cannot be read."""
        self._query("SELECT 1")

    # ---------------------------------------------------------------- reads
    def _rows(self, rows: list[tuple[Any, ...]]) -> GalleryRows:
        dim = self.embedding_dim
        face_ids = [str(r[0]) for r in rows]
        identities = [str(r[1]) for r in rows]
        blob = b"".join(bytes(r[2]) for r in rows)
        if len(blob) != len(rows) * dim * 4:
            raise StartupError(
                f"The gallery {self.path} holds embeddings that are not {dim}-d float32; "
                "it was made by another model."
            )
        embeddings = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), dim).copy()
        return GalleryRows(face_ids, identities, embeddings)

    def load_all(self) -> GalleryRows:
        """Every stored face, for building the in-memory index at startup."""
        return self.snapshot()[0]

    def snapshot(self) -> tuple[GalleryRows, int]:
        """Every stored face and the last change sequence number, in one read transaction."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN")
                try:
                    rows = cur.execute(
                        "SELECT face_id, identity, embedding FROM faces ORDER BY rowid"
                    ).fetchall()
                    last = cur.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
                    seq = int(last[0])
                finally:
                    cur.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                raise StorageUnavailable(f"gallery database {self.path}: {exc}") from exc
            finally:
                cur.close()
        return self._rows(rows), seq

    def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Up to ``limit`` changes after ``seq`` with the added faces that still exist."""
        rows = self._query(
            "SELECT c.seq, c.op, c.face_id, f.identity, f.embedding FROM changes c "
            "LEFT JOIN faces f ON c.op = 'add' AND f.face_id = c.face_id "
            "WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
            (seq, limit),
        )
        return [_change(r, self.embedding_dim) for r in rows]

    def wait_for_changes(self, timeout: float) -> None:
        """SQLite has no notifications: the caller polls every ``timeout`` seconds."""
        del timeout  # the caller's stop event does the waiting

    def count(self) -> tuple[int, int]:
        """(identities, faces)."""
        row = self._query("SELECT COUNT(DISTINCT identity), COUNT(*) FROM faces")[0]
        return int(row[0]), int(row[1])

    def list_identities(self, limit: int, offset: int) -> tuple[list[tuple[str, int]], int]:
        """A page of (identity, faces) ordered by name, and the total number of identities."""
        page = self._query(
            "SELECT identity, COUNT(*) FROM faces GROUP BY identity ORDER BY identity "
            "LIMIT ? OFFSET ?",
            (limit, offset),
        )
        total = self._query("SELECT COUNT(DISTINCT identity) FROM faces")[0][0]
        return [(str(i), int(n)) for i, n in page], int(total)

    def faces_of(self, identity: str) -> list[FaceRecord]:
        """The faces of one identity, oldest first (empty if unknown)."""
        rows = self._query(
            "SELECT face_id, identity, model_version, created_at FROM faces "
            "WHERE identity = ? ORDER BY created_at, rowid",
            (identity,),
        )
        return [FaceRecord(*(str(v) for v in r)) for r in rows]

    # --------------------------------------------------------------- writes
    def add_face(self, face_id: str, identity: str, embedding: np.ndarray, created_at: str) -> int:
        """Insert one face and its change in one committed transaction; returns its seq."""
        vector = check_embedding(embedding, self.embedding_dim)
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO faces (face_id, identity, embedding, model_version, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (face_id, identity, vector.tobytes(), self.model_version, created_at),
            )
            cur.execute("INSERT INTO changes (op, face_id) VALUES ('add', ?)", (face_id,))
            return int(cur.lastrowid or 0)

    def delete_identity(self, identity: str) -> list[str]:
        """Erase every face of ``identity``; returns the erased face ids."""
        with self._transaction() as cur:
            rows = cur.execute(
                "DELETE FROM faces WHERE identity = ? RETURNING face_id", (identity,)
            ).fetchall()
            face_ids = [str(r[0]) for r in rows]
            cur.executemany(
                "INSERT INTO changes (op, face_id) VALUES ('remove', ?)",
                [(f,) for f in face_ids],
            )
        if face_ids:
            self._purge_wal()
        return face_ids

    def delete_face(self, identity: str, face_id: str) -> bool:
        """Erase one face of ``identity``; False if there is no such face."""
        with self._transaction() as cur:
            cur.execute("DELETE FROM faces WHERE identity = ? AND face_id = ?", (identity, face_id))
            deleted = cur.rowcount > 0
            if deleted:
                cur.execute("INSERT INTO changes (op, face_id) VALUES ('remove', ?)", (face_id,))
        if deleted:
            self._purge_wal()
        return deleted

    def _purge_wal(self) -> None:
        """Checkpoint and truncate the WAL so erased rows leave no copy in it."""
        # Busy (another process reading): the next erasure's checkpoint retries.
        with self._lock, suppress(sqlite3.OperationalError):
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _change(row: tuple[Any, ...], dim: int) -> Change:
    """A change-log row (seq, op, face_id, identity?, embedding?) as a Change."""
    seq, op, face_id, identity, blob = row
    embedding = None
    if identity is not None and blob is not None:
        embedding = np.frombuffer(bytes(blob), dtype=np.float32)
        if embedding.shape[0] != dim:
            raise ValueError(f"face {face_id} has a {embedding.shape[0]}-d embedding, not {dim}")
    return Change(
        int(seq),
        "add" if op == "add" else "remove",
        str(face_id),
        None if identity is None else str(identity),
        embedding,
    )
