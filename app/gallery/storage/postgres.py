"""PostgreSQL gallery store (psycopg 3), for galleries shared by many service processes.

The same tables and queries as the SQLite store (``app.gallery.storage``,
``app.gallery.storage.queries``); this module holds the connections, locking and schema. PostgreSQL
is the source of truth; matching stays in each process's in-memory index, kept current
by tailing the ``changes`` table. Every write transaction first takes one advisory lock,
so writers are serialised across processes and ``changes.seq`` order is commit order (a
reader that has applied everything up to ``seq`` can never see an earlier ``seq`` commit
later), and sends ``NOTIFY faceid_gallery`` so that listening processes wake up at once.

Schema: created or migrated at startup under the same advisory lock (several processes may
start at once); the version is the one row of ``schema_version``.

Timeouts (``DbTimeouts``, the ``FACEID_DB_*`` settings): connecting is bounded by libpq's
``connect_timeout``; every session sets the server-side ``statement_timeout`` and
``lock_timeout`` (a slow query, or a writer stuck behind another's lock, is cancelled by the
server). A server that stops answering altogether (SIGSTOPped, a hung host, a partition that
does not reset: its kernel may still ACK, so TCP keepalives never fire) cannot cancel
anything, so every call also runs under a client-side deadline: when it passes, the
connection's socket is shut down from a timer thread, the blocked call fails at once and
its thread is released. Every failure is ``StorageUnavailable`` (503 ``storage_unavailable``).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from app.domain_errors import StartupError, StorageUnavailable
from app.gallery.storage.queries import SqlGalleryStore, Tx
from app.gallery.storage.schema import api_keys_table, migrate, v5_tables

CHANNEL = "faceid_gallery"
# pg_advisory_xact_lock key serialising gallery writes and migrations ("face" in ASCII).
_LOCK_KEY = 0x66616365


@dataclass(frozen=True)
class DbTimeouts:
    """How long database work may take (seconds): ``connect`` (libpq's connect_timeout),
    ``statement`` (the server's statement_timeout; one second later, ``call``, the
    client-side deadline of one call, and also of its wait for the connection) and ``lock``
    (the server's lock_timeout, writers' advisory lock included)."""

    connect: float = 5.0
    statement: float = 10.0
    lock: float = 5.0

    @property
    def call(self) -> float:
        """The client-side deadline of one call: a second past the server's own, so that
        a server that can still cancel does so first."""
        return self.statement + 1.0


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
    2: [
        "ALTER TABLE faces ADD COLUMN crop BYTEA",
        "CREATE INDEX faces_content_hash ON faces (content_hash)",
    ],
    3: [
        "ALTER TABLE faces ADD COLUMN collection TEXT NOT NULL DEFAULT 'default'",
        "CREATE INDEX faces_collection ON faces (collection, identity, created_at)",
        api_keys_table("BIGINT"),
    ],
    4: v5_tables("BIGINT", "DOUBLE PRECISION"),
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


def _sql(sql: str) -> Any:
    """``?`` placeholders (``app.gallery.storage.queries``) as psycopg's ``%s``; the statements are
    the module's own constants, never user input."""
    return sql.replace("?", "%s")


def _record_version(tx: Tx, version: int) -> None:
    tx.run("UPDATE schema_version SET version = ?", (version,))


class _PgTx:
    """A transaction's cursor, as ``app.gallery.storage.queries.Tx``."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self._cur.execute(_sql(sql), tuple(params)).fetchall()

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._cur.execute(_sql(sql), tuple(params)).rowcount


class PostgresStore(SqlGalleryStore):
    """A thread-safe handle on the PostgreSQL gallery: one connection for queries (under a
    lock, reconnected after a failure) and one that LISTENs for changes."""

    engine = "postgresql"
    _noun = "gallery database"
    _elsewhere = "point FACEID_DATABASE_URL at another database"
    _insertion_order = "pos"
    _name_order = 'identity COLLATE "C"'

    def __init__(
        self,
        url: str,
        model_version: str,
        embedding_dim: int,
        timeouts: DbTimeouts | None = None,
    ) -> None:
        self.url = url
        self.timeouts = timeouts or DbTimeouts()
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
        limits = self.timeouts
        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, round(limits.connect)),
                options=f"-c statement_timeout={round(limits.statement * 1000)} "
                f"-c lock_timeout={round(limits.lock * 1000)}",
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
        StorageUnavailable; the transaction, if any, is rolled back by the server. The
        whole call, waiting for the lock included, is bounded by ``timeouts.call``."""
        deadline = self.timeouts.call
        if not self._lock.acquire(timeout=deadline):
            raise StorageUnavailable(
                f"the gallery database connection stayed busy for {deadline:g} s"
            )
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            conn = self._conn
            with _Deadline(conn, deadline) as watch:
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
                    raise StorageUnavailable(watch.reason(exc)) from exc
            if watch.expired:  # broken just as the call finished: reconnect next time
                self._conn = None
                with suppress(Exception):
                    conn.close()
        finally:
            self._lock.release()

    def _migrate(self) -> None:
        with self._transaction(write=True) as tx:
            tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = tx.rows("SELECT version FROM schema_version")
            if not row:
                tx.run("INSERT INTO schema_version (version) VALUES (0)")
                version = 0
            else:
                version = int(row[0][0])
            migrate(tx, version, MIGRATIONS, _record_version, f"Gallery database {self.location}")

    # ----------------------------------------------------------- engine hooks
    @contextmanager
    def _transaction(self, write: bool) -> Iterator[_PgTx]:
        """A writer's transaction first takes the advisory lock (writers and migrations
        are serialised across processes); a reader's runs in REPEATABLE READ (one
        snapshot)."""
        with self._cursor(transaction=True) as cur:
            if write:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            else:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield _PgTx(cur)

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._cursor() as cur:
            return cur.execute(_sql(sql), tuple(params)).fetchall()

    def _notify(self, tx: Any, seq: int) -> None:
        tx.rows("SELECT pg_notify(?, ?)", (CHANNEL, str(seq)))

    # ---------------------------------------------------------------- extras
    def wait_for_changes(self, timeout: float) -> None:
        """Block until a NOTIFY from a writer arrives or ``timeout`` s pass (raises
        StorageUnavailable when the listening connection cannot be (re)made)."""
        if self._listener is None or self._listener.closed:
            listener = self._connect()
            with _Deadline(listener, self.timeouts.call) as watch:
                try:
                    listener.execute(f"LISTEN {CHANNEL}")
                except psycopg.Error as exc:
                    with suppress(Exception):
                        listener.close()
                    raise StorageUnavailable(watch.reason(exc)) from exc
            self._listener = listener
            return  # notifications sent while not listening are lost: the caller catches up
        listener = self._listener
        with _Deadline(listener, timeout + self.timeouts.call) as watch:
            try:
                for _ in listener.notifies(timeout=timeout, stop_after=1):
                    pass
            except psycopg.Error as exc:
                with suppress(Exception):
                    listener.close()
                self._listener = None
                raise StorageUnavailable(watch.reason(exc)) from exc

    def close(self) -> None:
        """Close both connections."""
        with self._lock:
            for conn in (self._conn, self._listener):
                if conn is not None:
                    with suppress(Exception):
                        conn.close()
            self._conn = self._listener = None


class _Deadline:
    """Breaks ``conn`` if the block it guards has not finished within ``seconds``: its
    socket is shut down (through a duplicate of its descriptor, from a timer thread), so a
    call blocked on a server that no longer answers fails at once and its thread is free.
    The connection is then unusable; the store drops it and reconnects on the next call."""

    def __init__(self, conn: psycopg.Connection[Any], seconds: float) -> None:
        self._conn = conn
        self.seconds = seconds
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        self.expired = True
        try:
            fd = os.dup(self._conn.fileno())
        except Exception:  # closed meanwhile: nothing to break
            return
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return
        with sock, suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def reason(self, exc: BaseException) -> str:
        if self.expired:
            return f"the gallery database did not answer within {self.seconds:g} s"
        return _first_line(exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
