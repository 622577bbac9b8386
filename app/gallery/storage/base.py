"""The gallery's storage interface, shared by its two engines.

``FACEID_DATABASE_URL`` unset: the SQLite file ``<data_dir>/gallery.sqlite3``
(``app.gallery.storage.sqlite.GalleryStore``). ``FACEID_DATABASE_URL=postgresql://…``:
a PostgreSQL database (``app.gallery.storage.postgres.PostgresStore``) that several service
processes, containers or machines share.

Both engines hold the same three tables (schema version ``SCHEMA_VERSION``, created or
migrated by the service at startup):

- ``faces``: one row per enrolled face (``face_id``, ``identity``, ``embedding`` float32
  bytes, ``model_version``, ``created_at``, a nullable ``content_hash``: the SHA-256 of
  the photo's bytes, and a nullable ``crop``: the aligned face crop, encrypted, kept only
  with ``FACEID_KEEP_ALIGNED_CROPS``, see ``app.gallery.crops``);
- ``changes``: the ordered change log, one row per added or removed face (``seq``, ``op``
  ``'add'``/``'remove'``, ``face_id``), written in the same transaction as the change.
  It names faces by their random id only, so erasing a person leaves no name and no
  embedding in it. Writers are serialised, so ``seq`` order is commit order and a reader
  that has applied every change up to ``seq`` never misses a later one;
- ``schema_version``: one row, the version of the schema;
- ``identity_meta``: optional metadata of an identity (``collection``, ``identity``,
  ``external_id``, ``data`` a small JSON object); it moves with a rename or merge and is
  erased with the identity's last face;
- ``followers``: every process that follows the change log (``process_id``,
  ``applied_seq``, ``seen_at`` its last heartbeat, epoch seconds); ``change_floor``: one
  row, the seq up to which ``changes`` was pruned. The log is pruned up to the lowest
  ``applied_seq`` of the followers seen within ``FACEID_CHANGE_LOG_TTL_S``; a process
  found below the floor reloads the whole gallery (``GalleryService.sync``).

The queries live once, in ``app.gallery.storage.queries.SqlGalleryStore``, and the
migration loop in ``app.gallery.storage.schema``; each engine adds its connection
handling, locking and migration statements. Failures are ``app.domain_errors``'
``StorageUnavailable`` (unreachable) and ``StartupError`` (cannot open or migrate).

Every process keeps the whole gallery in memory and tails ``changes`` from the last
sequence number it applied (``app.gallery.service.GalleryService``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

SCHEMA_VERSION = 5
"""1: faces only (SQLite ``PRAGMA user_version``); 2: + ``content_hash``, ``changes`` and
``schema_version``; 3: + ``crop`` and an index on ``content_hash``; 4: + ``collection``
(existing faces are in ``default``) and the ``api_keys`` table; 5: + ``identity_meta``
(an identity's external id and JSON data), ``followers`` (each following process's applied
seq and heartbeat), ``change_floor`` (the log is pruned up to it) and ``faces.quality``
(the face's quality at enrolment)."""

#: The largest ``data`` object of an identity's metadata, as compact UTF-8 JSON.
METADATA_MAX_BYTES = 4096
#: The longest external id of an identity.
EXTERNAL_ID_MAX_CHARS = 256

#: The collection of today's routes (and of every face stored before collections).
DEFAULT_COLLECTION = "default"

ChangeOp = Literal["add", "remove"]
#: ``rename``: the target must not exist; ``merge``: it must; ``either``: whichever it is
#: (CompreFace's subject rename).
MoveMode = Literal["rename", "merge", "either"]


@dataclass(frozen=True)
class FaceRecord:
    """What the gallery says about one face, without its embedding."""

    face_id: str
    identity: str
    model_version: str
    created_at: str
    content_hash: str | None = None
    collection: str = DEFAULT_COLLECTION


@dataclass(frozen=True)
class StoredFace:
    """Everything stored about one face: what enrolment, import and re-embedding write
    and what export reads. ``crop`` is the encrypted aligned crop, if kept."""

    face_id: str
    identity: str
    embedding: np.ndarray
    created_at: str
    content_hash: str | None = None
    crop: bytes | None = None
    model_version: str | None = None  # as read; writes use the store's own
    collection: str = DEFAULT_COLLECTION
    quality: float | None = None  # as enrolment judged it (faces.quality)


@dataclass(frozen=True)
class GalleryRows:
    """Every stored face, ready for ``GalleryIndex.add_many``."""

    face_ids: list[str]
    identities: list[str]
    embeddings: np.ndarray  # float32 N×D
    collections: list[str] | None = None  # per face; None: all in the default collection


@dataclass(frozen=True)
class Change:
    """One entry of the change log. For an ``add`` whose face still exists, ``identity``
    and ``embedding`` are the face's; for an ``add`` of a face erased since, both are
    None (a later ``remove`` follows in the log)."""

    seq: int
    op: ChangeOp
    face_id: str
    identity: str | None = None
    embedding: np.ndarray | None = None
    collection: str | None = None


@dataclass(frozen=True)
class IdentityMeta:
    """An identity's optional metadata: an external id (another system's key for the
    person) and a small JSON object (``METADATA_MAX_BYTES``)."""

    external_id: str | None = None
    data: dict[str, object] | None = None

    def to_json(self) -> dict[str, object]:
        """As the API returns it."""
        return {"external_id": self.external_id, "data": self.data}


@dataclass(frozen=True)
class KeyRecord:
    """One API key as the gallery database keeps it: never the key itself, only the
    SHA-256 of its secret part (``app.keys``), its role and the collections it opens
    (``("*",)``: all)."""

    key_id: str
    secret_hash: str
    role: str
    collections: tuple[str, ...]
    created_at: str
    name: str | None = None
    revoked_at: str | None = None


@dataclass(frozen=True)
class CollectionSize:
    """How many identities and faces a collection holds."""

    name: str
    identities: int
    faces: int


class GalleryStorage(Protocol):
    """What the gallery service and the gallery commands need from a database engine
    (both engines: ``app.gallery.storage.queries.SqlGalleryStore``). Every method may raise
    ``StorageUnavailable``; writes are atomic (all or nothing)."""

    model_version: str
    embedding_dim: int
    engine: str  # "sqlite" or "postgresql"
    location: str  # where, for messages (a path, or a URL without its password)

    def check_model_version(self) -> None:
        """Raise StartupError when the stored faces were made by another model."""
        ...

    def snapshot(self) -> tuple[GalleryRows, int]:
        """Every stored face and the sequence number of the last change they include,
        read in one consistent snapshot."""
        ...

    def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Up to ``limit`` changes after ``seq``, in order."""
        ...

    def wait_for_changes(self, timeout: float) -> None:
        """Block until another process may have written a change, or ``timeout`` s."""
        ...

    def count(self, collection: str | None = None) -> tuple[int, int]:
        """(identities, faces) of one collection, or of all (None)."""
        ...

    def collections(self) -> list[CollectionSize]:
        """Every collection that holds a face, by name."""
        ...

    def list_identities(
        self, limit: int, offset: int, collection: str = DEFAULT_COLLECTION
    ) -> tuple[list[tuple[str, int]], int]:
        """A page of (identity, faces) ordered by name, and the total number of identities."""
        ...

    def faces_of(self, identity: str, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        """The faces of one identity, oldest first (empty if unknown)."""
        ...

    def faces_with_hashes(
        self, hashes: Sequence[str], collection: str | None = None
    ) -> list[FaceRecord]:
        """Every face whose photo had one of these content hashes (in one collection, or
        in any: None)."""
        ...

    def existing_face_ids(self, face_ids: Sequence[str]) -> set[str]:
        """Those of ``face_ids`` that are stored."""
        ...

    def face_qualities(self, collection: str = DEFAULT_COLLECTION) -> dict[str, float]:
        """Face id → quality at enrolment, for the faces of ``collection`` that have one."""
        ...

    def iter_faces(
        self, with_crops: bool = False, batch: int = 1000, collection: str | None = None
    ) -> Iterator[StoredFace]:
        """Every stored face (of one collection, or all) in the order it was added, read
        in one snapshot."""
        ...

    def find_face(self, face_id: str, collection: str = DEFAULT_COLLECTION) -> StoredFace | None:
        """One face of ``collection`` by id, with its embedding (None: not there)."""
        ...

    def list_faces(
        self,
        limit: int,
        offset: int,
        collection: str = DEFAULT_COLLECTION,
        identity: str | None = None,
    ) -> tuple[list[FaceRecord], int]:
        """A page of a collection's faces (of one identity, or all) in the order they
        were added, and their total."""
        ...

    def crop_of(self, face_id: str) -> bytes | None:
        """The kept (encrypted) crop of a face, or None."""
        ...

    def add_faces(self, faces: Sequence[StoredFace], skip_existing: bool = False) -> list[str]:
        """Insert faces and their changes in one transaction; returns the ids inserted."""
        ...

    def delete_identity(self, identity: str, collection: str = DEFAULT_COLLECTION) -> list[str]:
        """Erase every face of ``identity``; returns the erased face ids."""
        ...

    def delete_face(
        self, identity: str, face_id: str, collection: str = DEFAULT_COLLECTION
    ) -> bool:
        """Erase one face of ``identity``; False if there is no such face."""
        ...

    def delete_faces(
        self, face_ids: Sequence[str] | None, collection: str = DEFAULT_COLLECTION
    ) -> list[FaceRecord]:
        """Erase these faces of ``collection`` (None: all of them); returns those erased."""
        ...

    def rename_identity(
        self, identity: str, new_identity: str, collection: str = DEFAULT_COLLECTION
    ) -> list[StoredFace]:
        """Move every face of ``identity`` to ``new_identity`` (a merge if it exists),
        logged as a remove and an add per face; returns the moved faces."""
        ...

    def move_identity(
        self, identity: str, target: str, collection: str, mode: MoveMode
    ) -> list[StoredFace]:
        """Rename (``target`` must not exist) or merge (it must) one identity into another
        in one transaction; see ``SqlGalleryStore.move_identity``."""
        ...

    def move_face(
        self, identity: str, face_id: str, target: str, collection: str = DEFAULT_COLLECTION
    ) -> StoredFace | None:
        """Move one face of ``identity`` to ``target`` (new or existing); None: no such face."""
        ...

    def set_metadata(
        self, identity: str, meta: IdentityMeta, collection: str = DEFAULT_COLLECTION
    ) -> bool:
        """Replace an enrolled identity's metadata; False: no such identity."""
        ...

    def replace_face(self, identity: str, old_face_id: str, face: StoredFace) -> bool:
        """Insert ``face`` and erase ``identity``'s face ``old_face_id`` in one
        transaction; False (nothing written) when there is no such face."""
        ...

    def metadata_of(
        self, identities: Sequence[str], collection: str = DEFAULT_COLLECTION
    ) -> dict[str, IdentityMeta]:
        """The metadata of those ``identities`` that have some."""
        ...

    def change_floor(self) -> int:
        """The seq up to which the change log was pruned (0: never)."""
        ...

    def report_follower(self, process_id: str, applied_seq: int, now: float) -> None:
        """Record that ``process_id`` has applied every change up to ``applied_seq``."""
        ...

    def forget_follower(self, process_id: str) -> None:
        """Remove a follower (it stopped following)."""
        ...

    def prune_changes(self, live_since: float) -> int:
        """Delete the changes every follower seen since ``live_since`` has applied;
        returns how many."""
        ...

    def change_log_size(self) -> int:
        """Rows in the change log."""
        ...

    def api_keys(self) -> list[KeyRecord]:
        """Every API key record, revoked ones included, oldest first."""
        ...

    def keys_version(self) -> int:
        """A number that changes whenever a key is created or revoked (0: none ever)."""
        ...

    def add_key(self, key: KeyRecord) -> None:
        """Store a new key record."""
        ...

    def revoke_key(self, key_id: str, when: str) -> bool:
        """Mark a key revoked at ``when``; False if there is no such live key."""
        ...

    def ping(self) -> None:
        """Raise StorageUnavailable when the database cannot be reached."""
        ...

    def close(self) -> None:
        """Release the connections."""
        ...


def content_hash(data: bytes) -> str:
    """The SHA-256 of a photo's bytes, as stored with the faces enrolled from it
    (``content_hash``): enrolment, bulk enrolment and re-embedding all match on it."""
    return hashlib.sha256(data).hexdigest()


def check_embedding(embedding: np.ndarray, dim: int) -> np.ndarray:
    """``embedding`` as contiguous float32 of ``dim`` values (ValueError otherwise)."""
    vector = np.ascontiguousarray(embedding, dtype=np.float32).reshape(-1)
    if vector.shape[0] != dim:
        raise ValueError(f"embedding has {vector.shape[0]} values, expected {dim}")
    return vector
