"""The schema-migration loop both engines run at startup, inside one write transaction.

Each engine states its own statements (``MIGRATIONS[v]`` takes a schema of version ``v``
to ``v + 1``) and how it records a version; this module walks the steps once for both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from app.domain_errors import StartupError
from app.gallery.storage.base import SCHEMA_VERSION
from app.gallery.storage.queries import Tx


def migrate(
    tx: Tx,
    version: int,
    migrations: Mapping[int, Sequence[str]],
    record: Callable[[Tx, int], None],
    where: str,
) -> int:
    """Bring a schema of ``version`` to ``SCHEMA_VERSION`` in the open transaction ``tx``,
    calling ``record(tx, v)`` after each step; returns the new version. A schema newer
    than this release is a ``StartupError`` (``where`` names the gallery in the message)."""
    if version > SCHEMA_VERSION:
        raise StartupError(
            f"{where} has schema version {version}; this service reads versions up to "
            f"{SCHEMA_VERSION}: run a newer release."
        )
    while version < SCHEMA_VERSION:
        for statement in migrations[version]:
            tx.run(statement)
        version += 1
        record(tx, version)
    return version


def api_keys_table(integer: str) -> str:
    """The ``api_keys`` table (schema 4) in an engine's type for a growing integer:
    key id, SHA-256 of the secret (never the key), role, collections (a JSON list; ``*``:
    all), times, and a version that grows with every change (``keys_version``)."""
    return f"""CREATE TABLE api_keys (
            key_id      TEXT PRIMARY KEY,
            secret_hash TEXT NOT NULL,
            role        TEXT NOT NULL,
            collections TEXT NOT NULL,
            created_at  TEXT NOT NULL,
            name        TEXT,
            revoked_at  TEXT,
            version     {integer} NOT NULL
        )"""


def v5_tables(integer: str, real: str) -> list[str]:
    """Schema 5's tables in an engine's types for a growing integer and a float: identity
    metadata, the change log's followers and its pruned floor (``app.gallery.storage.base``),
    and each face's enrolment quality."""
    return [
        """CREATE TABLE identity_meta (
            collection  TEXT NOT NULL,
            identity    TEXT NOT NULL,
            external_id TEXT,
            data        TEXT,
            PRIMARY KEY (collection, identity)
        )""",
        f"""CREATE TABLE followers (
            process_id  TEXT PRIMARY KEY,
            applied_seq {integer} NOT NULL,
            seen_at     {real} NOT NULL
        )""",
        f"CREATE TABLE change_floor (seq {integer} NOT NULL)",
        "INSERT INTO change_floor (seq) VALUES (0)",
        # the face's quality as enrolment judged it (null: enrolled before schema 5, or
        # imported/re-embedded without it), so the audit can list weak enrolment faces
        f"ALTER TABLE faces ADD COLUMN quality {real}",
    ]
