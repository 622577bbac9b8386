"""SQLite gallery store: embeddings and metadata only, never photos.

One row per enrolled face: ``face_id`` (uuid), ``identity``, ``embedding`` (float32 blob),
``model_version`` and ``created_at``. The database runs in WAL mode with
``synchronous=FULL``; every enrollment and deletion is one transaction, committed before
the API answers, so it survives a restart, a ``kill -9`` and a power cut.

Rows record the model that made them; opening a gallery with another model refuses to
start rather than mixing incomparable embeddings.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import StartupError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS faces (
    face_id       TEXT PRIMARY KEY,
    identity      TEXT NOT NULL,
    embedding     BLOB NOT NULL,
    model_version TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_identity ON faces (identity, created_at);
"""


@dataclass(frozen=True)
class FaceRecord:
    face_id: str
    identity: str
    model_version: str
    created_at: str


@dataclass(frozen=True)
class GalleryRows:
    """Every stored face, ready for ``GalleryIndex.add_many``."""

    face_ids: list[str]
    identities: list[str]
    embeddings: np.ndarray  # float32 N×D


class GalleryStore:
    """A thread-safe handle on the gallery database (one connection, one lock)."""

    def __init__(self, path: Path, model_version: str, embedding_dim: int) -> None:
        self.path = Path(path)
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
            with self._transaction() as cur:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        cur.execute(statement)
                version = cur.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    cur.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                elif version != SCHEMA_VERSION:
                    raise StartupError(
                        f"Gallery {self.path} has schema version {version}; this service "
                        f"reads version {SCHEMA_VERSION}."
                    )
        except sqlite3.DatabaseError as exc:
            raise StartupError(f"Cannot open the gallery database {self.path}: {exc}") from exc
        self.check_model_version()

    # ------------------------------------------------------------ internals
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN IMMEDIATE … COMMIT (or ROLLBACK on error), under the lock."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

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

    # ---------------------------------------------------------------- reads
    def load_all(self) -> GalleryRows:
        """Every stored face, for building the in-memory index at startup."""
        rows = self._query("SELECT face_id, identity, embedding FROM faces ORDER BY rowid")
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
    def add_face(self, face_id: str, identity: str, embedding: np.ndarray, created_at: str) -> None:
        """Insert one face in its own committed transaction."""
        vector = np.ascontiguousarray(embedding, dtype=np.float32).reshape(-1)
        if vector.shape[0] != self.embedding_dim:
            raise ValueError(
                f"embedding has {vector.shape[0]} values, expected {self.embedding_dim}"
            )
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO faces (face_id, identity, embedding, model_version, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (face_id, identity, vector.tobytes(), self.model_version, created_at),
            )

    def delete_identity(self, identity: str) -> int:
        """Erase every face of ``identity``; returns how many rows were deleted."""
        with self._transaction() as cur:
            cur.execute("DELETE FROM faces WHERE identity = ?", (identity,))
            deleted = int(cur.rowcount)
        self._purge_wal()
        return deleted

    def delete_face(self, identity: str, face_id: str) -> bool:
        """Erase one face of ``identity``; False if there is no such face."""
        with self._transaction() as cur:
            cur.execute("DELETE FROM faces WHERE identity = ? AND face_id = ?", (identity, face_id))
            deleted = cur.rowcount > 0
        if deleted:
            self._purge_wal()
        return deleted

    def _purge_wal(self) -> None:
        """Checkpoint and truncate the WAL so erased rows leave no copy in it."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
