"""PostgreSQL gallery store (psycopg 3), for galleries shared by many service processes.

The same tables as the SQLite store (``app.gallery.storage``). PostgreSQL is the source of
truth; matching stays in each process's in-memory index, kept current by tailing the
``changes`` table. Every write transaction first takes one advisory lock, so writers are
serialised across processes and ``changes.seq`` order is commit order (a reader that has
applied everything up to ``seq`` can never see an earlier ``seq`` commit later), and sends
``NOTIFY faceid_gallery`` so that listening processes wake up at once.

Schema: created or migrated at startup under the same advisory lock (several processes may
start at once); the version is the one row of ``schema_version``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg

from app.errors import StartupError
from app.gallery.storage import (
    SCHEMA_VERSION,
    Change,
    FaceRecord,
    GalleryRows,
    StorageUnavailable,
    check_embedding,
)

CHANNEL = "faceid_gallery"
# pg_advisory_xact_lock key serialising gallery writes and migrations ("face" in ASCII).
_LOCK_KEY = 0x66616365
_CONNECT_TIMEOUT_S = 5

# MIGRATIONS[v] takes a schema of version v to version v + 1 (schema_version exists first).
MIGRATIONS: dict[int, list[str]] = {
    0: [
        """CREATE TABLE faces (
            pos           BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            face_id       TEXT PRIMARY KEY,
            identity      TEXT NOT NULL,
            embedding     BYTEA NOT NULL,
            model_version TEXT NOT NULL,
            created_at    TEXT NOT NULL
        )""",
        "CREATE INDEX faces_identity ON faces (identity, created_at)",
    ],
    1: [
        "ALTER TABLE faces ADD COLUMN content_hash TEXT",
        """CREATE TABLE changes (
            seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            op      TEXT NOT NULL CHECK (op IN ('add', 'remove')),
            face_id TEXT NOT NULL
        )""",
    ],
}


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


class PostgresStore:
    """A thread-safe handle on the PostgreSQL gallery: one connection for queries (under a
    lock, reconnected after a failure) and one that LISTENs for changes."""

    engine = "postgresql"

    def __init__(self, url: str, model_version: str, embedding_dim: int) -> None:
        self.url = url
        self.location = redact(url)
        self.model_version = model_version
        self.embedding_dim = embedding_dim
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        try:
            self._migrate()
            self.check_model_version()
        except StorageUnavailable as exc:
            self.close()
            raise StartupError(
                f"Cannot reach the gallery database {self.location}: {exc}. Start PostgreSQL "
                "or fix FACEID_DATABASE_URL."
            ) from exc
        except psycopg.Error as exc:
            self.close()
            raise StartupError(f"Cannot open the gallery database {self.location}: {exc}") from exc
        except StartupError:
            self.close()
            raise

    # ------------------------------------------------------------ internals
    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=_CONNECT_TIMEOUT_S,
                # Notice a dead server or network within seconds, not hours.
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                application_name="faceid",
            )
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(_first_line(exc)) from exc

    @contextmanager
    def _cursor(self, transaction: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor on the query connection (under the lock; in a transaction if asked).
        A lost connection is dropped (the next call reconnects) and raises
        StorageUnavailable; the transaction, if any, is rolled back by the server."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            conn = self._conn
            try:
                if transaction:
                    with conn.transaction(), conn.cursor() as cur:
                        yield cur
                else:
                    with conn.cursor() as cur:
                        yield cur
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._conn = None
                with suppress(Exception):
                    conn.close()
                raise StorageUnavailable(_first_line(exc)) from exc

    def _write_lock(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))

    def _migrate(self) -> None:
        with self._cursor(transaction=True) as cur:
            self._write_lock(cur)
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = cur.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                cur.execute("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            else:
                version = int(row[0])
            if version > SCHEMA_VERSION:
                raise StartupError(
                    f"Gallery database {self.location} has schema version {version}; this "
                    f"service reads versions up to {SCHEMA_VERSION}: run a newer release."
                )
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    cur.execute(statement)  # type: ignore[arg-type]  # constant SQL
                version += 1
                cur.execute("UPDATE schema_version SET version = %s", (version,))

    # --------------------------------------------------------------- checks
    def check_model_version(self) -> None:
        """Refuse a gallery whose rows were made by another model."""
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT model_version, COUNT(*) FROM faces GROUP BY model_version "
                "ORDER BY COUNT(*) DESC"
            ).fetchall()
        others = [(str(v), int(n)) for v, n in rows if v != self.model_version]
        if others:
            found = ", ".join(f"{n} faces from model {v!r}" for v, n in others)
            raise StartupError(
                f"The gallery database {self.location} holds {found}, but the loaded model is "
                f"{self.model_version!r}: embeddings of different models cannot be compared. "
                "Serve the model that made the gallery, point FACEID_DATABASE_URL at another "
                "database, or re-enroll the people with the new model."
            )

    def ping(self) -> None:
        """Raise StorageUnavailable when the server cannot be reached."""
        with self._cursor() as cur:
            cur.execute("SELECT 1")

    # ---------------------------------------------------------------- reads
    def snapshot(self) -> tuple[GalleryRows, int]:
        """Every stored face and the last change sequence number, in one snapshot."""
        with self._cursor(transaction=True) as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = cur.execute(
                "SELECT face_id, identity, embedding FROM faces ORDER BY pos"
            ).fetchall()
            seq_row = cur.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
        dim = self.embedding_dim
        blob = b"".join(bytes(r[2]) for r in rows)
        if len(blob) != len(rows) * dim * 4:
            raise StartupError(
                f"The gallery database {self.location} holds embeddings that are not "
                f"{dim}-d float32; it was made by another model."
            )
        embeddings = np.frombuffer(blob, dtype=np.float32).reshape(len(rows), dim).copy()
        face_rows = GalleryRows([str(r[0]) for r in rows], [str(r[1]) for r in rows], embeddings)
        return face_rows, int(seq_row[0] if seq_row else 0)

    def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Up to ``limit`` changes after ``seq`` with the added faces that still exist."""
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT c.seq, c.op, c.face_id, f.identity, f.embedding FROM changes c "
                "LEFT JOIN faces f ON c.op = 'add' AND f.face_id = c.face_id "
                "WHERE c.seq > %s ORDER BY c.seq LIMIT %s",
                (seq, limit),
            ).fetchall()
        changes = []
        for seq_, op, face_id, identity, blob in rows:
            embedding = None
            if identity is not None and blob is not None:
                embedding = np.frombuffer(bytes(blob), dtype=np.float32)
            changes.append(
                Change(
                    int(seq_),
                    "add" if op == "add" else "remove",
                    str(face_id),
                    None if identity is None else str(identity),
                    embedding,
                )
            )
        return changes

    def wait_for_changes(self, timeout: float) -> None:
        """Block until a NOTIFY from a writer arrives or ``timeout`` s pass (raises
        StorageUnavailable when the listening connection cannot be (re)made)."""
        if self._listener is None or self._listener.closed:
            listener = self._connect()
            try:
                listener.execute(f"LISTEN {CHANNEL}")
            except psycopg.Error as exc:
                listener.close()
                raise StorageUnavailable(_first_line(exc)) from exc
            self._listener = listener
            return  # notifications sent while not listening are lost: the caller catches up
        try:
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error as exc:
            with suppress(Exception):
                self._listener.close()
            self._listener = None
            raise StorageUnavailable(_first_line(exc)) from exc

    def count(self) -> tuple[int, int]:
        """(identities, faces)."""
        with self._cursor() as cur:
            row = cur.execute("SELECT COUNT(DISTINCT identity), COUNT(*) FROM faces").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def list_identities(self, limit: int, offset: int) -> tuple[list[tuple[str, int]], int]:
        """A page of (identity, faces) ordered by name, and the total number of identities."""
        with self._cursor() as cur:
            page = cur.execute(
                "SELECT identity, COUNT(*) FROM faces GROUP BY identity "
                'ORDER BY identity COLLATE "C" LIMIT %s OFFSET %s',
                (limit, offset),
            ).fetchall()
            total = cur.execute("SELECT COUNT(DISTINCT identity) FROM faces").fetchone()
        assert total is not None
        return [(str(i), int(n)) for i, n in page], int(total[0])

    def faces_of(self, identity: str) -> list[FaceRecord]:
        """The faces of one identity, oldest first (empty if unknown)."""
        with self._cursor() as cur:
            rows = cur.execute(
                "SELECT face_id, identity, model_version, created_at FROM faces "
                "WHERE identity = %s ORDER BY created_at, pos",
                (identity,),
            ).fetchall()
        return [FaceRecord(*(str(v) for v in r)) for r in rows]

    # --------------------------------------------------------------- writes
    def _log(self, cur: psycopg.Cursor[Any], op: str, face_ids: list[str]) -> int:
        """Append one change per face and notify the listeners; returns the last seq."""
        seq = 0
        for face_id in face_ids:
            row = cur.execute(
                "INSERT INTO changes (op, face_id) VALUES (%s, %s) RETURNING seq", (op, face_id)
            ).fetchone()
            assert row is not None
            seq = int(row[0])
        if face_ids:
            cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(seq)))
        return seq

    def add_face(self, face_id: str, identity: str, embedding: np.ndarray, created_at: str) -> int:
        """Insert one face and its change in one committed transaction; returns its seq."""
        vector = check_embedding(embedding, self.embedding_dim)
        with self._cursor(transaction=True) as cur:
            self._write_lock(cur)
            cur.execute(
                "INSERT INTO faces (face_id, identity, embedding, model_version, created_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                (face_id, identity, vector.tobytes(), self.model_version, created_at),
            )
            return self._log(cur, "add", [face_id])

    def delete_identity(self, identity: str) -> list[str]:
        """Erase every face of ``identity``; returns the erased face ids."""
        with self._cursor(transaction=True) as cur:
            self._write_lock(cur)
            rows = cur.execute(
                "DELETE FROM faces WHERE identity = %s RETURNING face_id", (identity,)
            ).fetchall()
            face_ids = [str(r[0]) for r in rows]
            self._log(cur, "remove", face_ids)
        return face_ids

    def delete_face(self, identity: str, face_id: str) -> bool:
        """Erase one face of ``identity``; False if there is no such face."""
        with self._cursor(transaction=True) as cur:
            self._write_lock(cur)
            cur.execute(
                "DELETE FROM faces WHERE identity = %s AND face_id = %s", (identity, face_id)
            )
            deleted = cur.rowcount > 0
            if deleted:
                self._log(cur, "remove", [face_id])
        return deleted

    def close(self) -> None:
        """Close both connections."""
        with self._lock:
            for conn in (self._conn, self._listener):
                if conn is not None:
                    with suppress(Exception):
                        conn.close()
            self._conn = self._listener = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
