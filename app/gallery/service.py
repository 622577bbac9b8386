"""Keeps the gallery database and this process's in-memory index consistent.

Writes go to the database first (one committed transaction that also appends to the
change log) and then to the index, under one lock, so a request that follows an answered
enrollment or deletion on this process sees it (read-your-writes), and a failed database
write leaves the index untouched.

Changes made by other processes (other ``FACEID_WORKERS``, replicas on a shared
PostgreSQL) arrive through the change log: a background thread (``start_sync``) applies
every change after the last sequence number this process applied, woken by PostgreSQL
NOTIFY and in any case every ``poll_s`` seconds, so a missed notification or a restart
loses nothing. Changes name faces by id and are idempotent (an ``add`` of a face already
in the index, or erased since, and a ``remove`` of a face not in it, do nothing), so a
process's own writes, applied at once, and the same changes read back from the log agree.

The change log is pruned (``maintain``): every following process records the last seq it
applied with a heartbeat (``followers``), and the changes that every process seen within
``follower_ttl_s`` has applied are deleted. A process that was gone longer (stopped,
suspended, partitioned) finds its seq below the pruned floor when it comes back and
reloads the whole gallery from a snapshot instead (``sync``), so it misses nothing.

Collections: every collection (a named gallery with its own identities) has its own
in-memory index, created when its first face arrives; a face id belongs to one collection.
With a key ring, the follower also reloads the API keys whenever they change in the
database, so a key created or revoked on one process takes effect on every process within
the same bound as a face.

All methods block; the API calls them in a worker thread.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from app.domain_errors import StorageUnavailable
from app.gallery.crops import CropVault
from app.gallery.records import new_face, utc_now
from app.gallery.search.index import GalleryIndex
from app.gallery.storage import (
    DEFAULT_COLLECTION,
    CollectionSize,
    FaceRecord,
    GalleryRows,
    GalleryStorage,
    KeyRecord,
    StoredFace,
)
from app.gallery.storage.base import IdentityMeta, MoveMode

_T = TypeVar("_T")

log = logging.getLogger("faceid.gallery")

_BATCH = 1000  # changes read per query while catching up
#: How often a following process reports its progress and prunes the change log (s).
MAINTAIN_EVERY_S = 5.0


@dataclass(frozen=True)
class Enrollment:
    face_id: str
    identity: str
    created_at: str


@dataclass(frozen=True)
class NewFace:
    """A face to enrol: its embedding, the SHA-256 of the photo it came from, and its
    aligned crop (kept, sealed, only when the service has a crop vault)."""

    identity: str
    embedding: np.ndarray
    content_hash: str | None = None
    crop: np.ndarray | None = None
    collection: str = DEFAULT_COLLECTION
    quality: float | None = None


class KeyListener(Protocol):
    """Who is told the API keys whenever they change in the database (``app.keys``)."""

    def load(self, records: list[KeyRecord]) -> None:
        """Replace the known keys with ``records``."""


class GalleryService:
    """The gallery as the API sees it: enroll, erase, list, match, follow other processes,
    in any collection."""

    def __init__(
        self,
        store: GalleryStorage,
        index: GalleryIndex | dict[str, GalleryIndex],
        change_seq: int = 0,
        vault: CropVault | None = None,
        ann_min_faces: int = 0,
        search_threads: int = 0,
    ) -> None:
        self.store = store
        self.vault = vault
        self._ann_min_faces = ann_min_faces
        self._search_threads = search_threads
        indexes = index if isinstance(index, dict) else {DEFAULT_COLLECTION: index}
        self._indexes: dict[str, GalleryIndex] = dict(indexes)
        self._collection_of: dict[str, str] = {
            face_id: name for name, idx in self._indexes.items() for face_id in idx.face_ids()
        }
        self._empty = self._new_index()
        self._write_lock = threading.Lock()
        #: How long a write waits for another write (or a catch-up) of this process to
        #: finish before it gives up with StorageUnavailable (None: for as long as it takes).
        self.write_wait_s: float | None = None
        self._change_seq = change_seq
        self._storage_ok = True
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        self._keys: KeyListener | None = None
        self._keys_version = -1
        #: This process as a follower of the change log (``followers.process_id``).
        self.process_id = str(uuid.uuid4())
        #: A follower not heard from for this long no longer holds the change log back.
        self.follower_ttl_s = 300.0
        #: How many times this process fell behind the pruned log and reloaded everything.
        self.resnapshots = 0

    @classmethod
    def open(
        cls,
        store: GalleryStorage,
        ann_min_faces: int = 0,
        search_threads: int = 0,
        vault: CropVault | None = None,
    ) -> GalleryService:
        """Load every stored face into fresh indexes (one per collection); from
        ``ann_min_faces`` faces on (0: never), an index builds an approximate graph in the
        background; ``search_threads`` (0: every core) split one exact scan of a large
        gallery. With a ``vault``, enrolled faces keep their aligned crops, sealed."""
        rows, seq = store.snapshot()
        indexes = {}
        for name, positions in _by_collection(rows).items():
            index = GalleryIndex(
                store.embedding_dim, ann_min_faces=ann_min_faces, search_threads=search_threads
            )
            index.add_many(
                [rows.face_ids[i] for i in positions],
                [rows.identities[i] for i in positions],
                rows.embeddings[positions],
            )
            indexes[name] = index
        if DEFAULT_COLLECTION not in indexes:
            indexes[DEFAULT_COLLECTION] = GalleryIndex(
                store.embedding_dim, ann_min_faces=ann_min_faces, search_threads=search_threads
            )
        return cls(store, indexes, seq, vault, ann_min_faces, search_threads)

    def _new_index(self) -> GalleryIndex:
        return GalleryIndex(
            self.store.embedding_dim,
            ann_min_faces=self._ann_min_faces,
            search_threads=self._search_threads,
        )

    def _index_for_write(self, collection: str) -> GalleryIndex:
        index = self._indexes.get(collection)
        if index is None:
            index = self._indexes[collection] = self._new_index()
        return index

    # ---------------------------------------------------------------- counts
    def index_of(self, collection: str = DEFAULT_COLLECTION) -> GalleryIndex:
        """The in-memory index of a collection (an empty one for a collection with no
        faces; nothing is created by asking)."""
        return self._indexes.get(collection, self._empty)

    @property
    def index(self) -> GalleryIndex:
        """The default collection's index."""
        return self.index_of(DEFAULT_COLLECTION)

    @property
    def faces(self) -> int:
        """Faces in every collection."""
        return sum(len(index) for index in list(self._indexes.values()))

    @property
    def identities(self) -> int:
        """Identities in every collection (a name in two collections counts twice)."""
        return sum(index.identities for index in list(self._indexes.values()))

    def size(self, collection: str = DEFAULT_COLLECTION) -> tuple[int, int]:
        """(identities, faces) of one collection, as this process holds it."""
        index = self.index_of(collection)
        return index.identities, len(index)

    def collection_sizes(self) -> list[CollectionSize]:
        """Every collection that holds a face (and ``default``), by name, as this process
        holds them."""
        sizes = [
            CollectionSize(name, index.identities, len(index))
            for name, index in list(self._indexes.items())
            if len(index) or name == DEFAULT_COLLECTION
        ]
        return sorted(sizes, key=lambda s: s.name)

    @property
    def change_seq(self) -> int:
        """The last change-log sequence number applied to the index (every change up to
        it is reflected; this process's own later writes are too)."""
        return self._change_seq

    @property
    def storage_ok(self) -> bool:
        """False while the last database access failed."""
        return self._storage_ok

    def storage_failed(self) -> None:
        """Record that a database call did not answer in time (``/health``: degraded until
        the next call succeeds)."""
        self._storage(False)

    # ---------------------------------------------------------------- writes
    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The write lock, waited for at most ``write_wait_s``."""
        wait = -1.0 if self.write_wait_s is None else self.write_wait_s
        if not self._write_lock.acquire(timeout=wait):
            self._storage(False)
            raise StorageUnavailable(f"the gallery stayed busy for {wait:g} s")
        try:
            yield
        finally:
            self._write_lock.release()

    def _stored(self, call: Callable[..., _T], *args: Any) -> _T:
        """``call(*args)`` on the storage, recording whether the database answered
        (``/health``: degraded from a failure until the next call that succeeds)."""
        try:
            result = call(*args)
        except StorageUnavailable:
            self._storage(False)
            raise
        self._storage(True)
        return result

    def _storage(self, ok: bool) -> None:
        if ok != self._storage_ok:
            if ok:
                log.warning("gallery database reachable again", extra={"db": self.store.location})
            else:
                log.error("gallery database unreachable", extra={"db": self.store.location})
        self._storage_ok = ok

    def _add_to_index(self, face_id: str, identity: str, embedding: np.ndarray, name: str) -> None:
        self._index_for_write(name).add(face_id, identity, embedding)
        self._collection_of[face_id] = name

    def _remove_from_index(self, face_id: str) -> None:
        name = self._collection_of.pop(face_id, None)
        if name is not None:
            self._indexes[name].remove_face(face_id)

    def enroll(
        self,
        identity: str,
        embedding: np.ndarray,
        content_hash: str | None = None,
        crop: np.ndarray | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> Enrollment:
        """Store one face durably, then make it matchable (StorageUnavailable: nothing
        was stored)."""
        return self.enroll_many([NewFace(identity, embedding, content_hash, crop, collection)])[0]

    def enroll_many(self, faces: list[NewFace]) -> list[Enrollment]:
        """Store several faces in one transaction (all or none), then make them matchable."""
        created_at = utc_now()
        rows = [
            new_face(
                face.identity,
                face.embedding,
                created_at=created_at,
                content_hash=face.content_hash,
                crop=face.crop,
                vault=self.vault,
                collection=face.collection,
                quality=face.quality,
            )
            for face in faces
        ]
        with self._writing():
            self._stored(self.store.add_faces, rows)
            for row in rows:
                self._add_to_index(row.face_id, row.identity, row.embedding, row.collection)
        return [Enrollment(r.face_id, r.identity, r.created_at) for r in rows]

    def replace_face(self, old_face_id: str, face: NewFace) -> Enrollment | None:
        """Enrol ``face`` in place of ``face.identity``'s face ``old_face_id``, in one
        transaction (a wrong face of a photo swapped for the right one); None, and nothing
        stored, when the identity has no such face."""
        row = new_face(
            face.identity,
            face.embedding,
            created_at=utc_now(),
            content_hash=face.content_hash,
            crop=face.crop,
            vault=self.vault,
            collection=face.collection,
            quality=face.quality,
        )
        with self._writing():
            done = self._stored(self.store.replace_face, face.identity, old_face_id, row)
            if not done:
                return None
            self._remove_from_index(old_face_id)
            self._add_to_index(row.face_id, row.identity, row.embedding, row.collection)
        return Enrollment(row.face_id, row.identity, row.created_at)

    def delete_identity(self, identity: str, collection: str = DEFAULT_COLLECTION) -> int:
        """Erase every face of ``identity``; 0 if it was not enrolled."""
        with self._writing():
            face_ids = self._stored(self.store.delete_identity, identity, collection)
            for face_id in face_ids:
                self._remove_from_index(face_id)
        return len(face_ids)

    def delete_face(
        self, identity: str, face_id: str, collection: str = DEFAULT_COLLECTION
    ) -> bool:
        """Erase one face of ``identity``; False if there is no such face."""
        with self._writing():
            deleted = self._stored(self.store.delete_face, identity, face_id, collection)
            if deleted:
                self._remove_from_index(face_id)
        return deleted

    def delete_faces(
        self, face_ids: list[str] | None, collection: str = DEFAULT_COLLECTION
    ) -> list[FaceRecord]:
        """Erase these faces of ``collection`` (None: every face of it) at once; returns
        those erased (unknown ids and other collections' faces are ignored)."""
        with self._writing():
            erased = self._stored(self.store.delete_faces, face_ids, collection)
            for record in erased:
                self._remove_from_index(record.face_id)
        return erased

    def rename_identity(
        self, identity: str, new_identity: str, collection: str = DEFAULT_COLLECTION
    ) -> int:
        """Move every face of ``identity`` to ``new_identity`` (merging into it when it
        exists); returns how many faces moved (0: no such identity)."""
        with self._writing():
            moved = self._stored(self.store.rename_identity, identity, new_identity, collection)
            for face in moved:
                self._remove_from_index(face.face_id)
                self._add_to_index(face.face_id, new_identity, face.embedding, collection)
        return len(moved)

    def move_identity(self, identity: str, target: str, collection: str, mode: MoveMode) -> int:
        """Rename (``mode="rename"``: ``target`` must not exist) or merge (``"merge"``:
        it must) an identity, in one transaction; returns how many faces moved. Raises
        ``UnknownIdentity``, ``IdentityExists`` or ``SameIdentity``; nothing changes then."""
        with self._writing():
            moved = self._stored(self.store.move_identity, identity, target, collection, mode)
            for face in moved:
                self._remove_from_index(face.face_id)
                self._add_to_index(face.face_id, target, face.embedding, collection)
        return len(moved)

    def move_face(
        self, identity: str, face_id: str, target: str, collection: str = DEFAULT_COLLECTION
    ) -> StoredFace | None:
        """Move one face of ``identity`` to ``target`` (new or enrolled), keeping its id,
        time and hash; None: ``identity`` has no such face (``SameIdentity`` if it is
        ``target``)."""
        with self._writing():
            moved = self._stored(self.store.move_face, identity, face_id, target, collection)
            if moved is not None:
                self._remove_from_index(face_id)
                self._add_to_index(face_id, target, moved.embedding, collection)
        return moved

    def set_metadata(
        self, identity: str, meta: IdentityMeta, collection: str = DEFAULT_COLLECTION
    ) -> bool:
        """Replace an enrolled identity's metadata; False: no such identity."""
        with self._writing():
            done = self._stored(self.store.set_metadata, identity, meta, collection)
        return done

    def metadata_of(
        self, identities: Sequence[str], collection: str = DEFAULT_COLLECTION
    ) -> dict[str, IdentityMeta]:
        """The metadata of those ``identities`` that have some."""
        return self._stored(self.store.metadata_of, identities, collection)

    # ------------------------------------------------------------------ sync
    def sync(self) -> int:
        """Apply every change after ``change_seq`` to the indexes; returns how many
        (raises StorageUnavailable). A process whose seq is below the pruned floor of the
        change log reloads the whole gallery instead (``resnapshot``)."""
        applied = 0
        with self._write_lock:
            while True:
                try:
                    changes = self.store.changes_since(self._change_seq, _BATCH)
                    # Read after the changes: a floor still at or below our seq means no
                    # change we need was pruned before (or while) we read them.
                    behind = self.store.change_floor() > self._change_seq
                    if behind:
                        self._resnapshot()
                        return applied
                except StorageUnavailable:
                    self._storage(False)
                    raise
                self._storage(True)
                for change in changes:
                    if change.op == "remove":
                        self._remove_from_index(change.face_id)
                    elif (
                        change.identity is not None
                        and change.embedding is not None
                        and change.face_id not in self._collection_of
                    ):
                        self._add_to_index(
                            change.face_id,
                            change.identity,
                            change.embedding,
                            change.collection or DEFAULT_COLLECTION,
                        )
                    self._change_seq = change.seq
                applied += len(changes)
                if len(changes) < _BATCH:
                    return applied

    def _resnapshot(self) -> None:
        """Make the indexes equal to a fresh snapshot of the database (under the write
        lock): faces gone are removed, new or moved ones added; the index objects stay, so
        searches running meanwhile are never cut off."""
        rows, seq = self.store.snapshot()
        log.warning(
            "gallery change log was pruned past this process; reloading the gallery",
            extra={"applied_seq": self._change_seq, "snapshot_seq": seq},
        )
        wanted = {face_id: i for i, face_id in enumerate(rows.face_ids)}
        collections = rows.collections or [DEFAULT_COLLECTION] * len(rows.face_ids)
        for face_id, name in list(self._collection_of.items()):
            i = wanted.get(face_id)
            if (
                i is None
                or collections[i] != name
                or self._indexes[name].identity_of(face_id) != rows.identities[i]
            ):
                self._remove_from_index(face_id)
        for name, positions in _by_collection(rows).items():
            new = [i for i in positions if rows.face_ids[i] not in self._collection_of]
            if new:
                self._index_for_write(name).add_many(
                    [rows.face_ids[i] for i in new],
                    [rows.identities[i] for i in new],
                    rows.embeddings[new],
                )
                for i in new:
                    self._collection_of[rows.face_ids[i]] = name
        self._change_seq = seq
        self.resnapshots += 1

    def maintain(self, now: float | None = None) -> int:
        """Report this process's applied seq (its heartbeat as a follower), then prune
        the change log up to what every live follower has applied; returns how many
        changes were pruned (raises StorageUnavailable)."""
        now = time.time() if now is None else now
        self.store.report_follower(self.process_id, self._change_seq, now)
        return self.store.prune_changes(now - self.follower_ttl_s)

    def follow_keys(self, listener: KeyListener) -> None:
        """Load the API keys into ``listener`` now, and again whenever they change."""
        self._keys = listener
        self.sync_keys()

    def sync_keys(self) -> bool:
        """Reload the keys if they changed in the database; returns whether they did
        (raises StorageUnavailable)."""
        if self._keys is None:
            return False
        version = self.store.keys_version()
        if version == self._keys_version:
            return False
        self._keys.load(self.store.api_keys())
        self._keys_version = version
        return True

    def start_sync(self, poll_s: float = 0.25) -> None:
        """Follow the change log (and the keys) in a background thread until ``close``."""
        if self._syncer is not None:
            return
        self._syncer = threading.Thread(
            target=self._follow, args=(poll_s,), name="faceid-gallery-sync", daemon=True
        )
        self._syncer.start()

    def _follow(self, poll_s: float) -> None:
        next_maintenance = 0.0  # report at once (hold the log), prune from the next round
        while not self._stop.is_set():
            try:
                self.sync()
                self.sync_keys()
                if time.monotonic() >= next_maintenance:
                    if next_maintenance == 0.0:
                        self.store.report_follower(self.process_id, self._change_seq, time.time())
                    else:
                        self.maintain()
                    next_maintenance = time.monotonic() + MAINTAIN_EVERY_S
                self.store.wait_for_changes(poll_s)
                if self.store.engine == "sqlite":
                    self._stop.wait(poll_s)
            except StorageUnavailable as exc:
                log.debug("gallery sync failed: %s", exc)
                self._stop.wait(poll_s)
            except Exception:  # never let the follower die: the next round retries
                log.exception("gallery sync failed")
                self._stop.wait(poll_s)

    def check_storage(self) -> bool:
        """Ping the database now; returns (and records) whether it answered."""
        try:
            self.store.ping()
        except StorageUnavailable:
            self._storage(False)
            return False
        self._storage(True)
        return True

    # ----------------------------------------------------------------- reads
    def list_identities(
        self, limit: int, offset: int, collection: str = DEFAULT_COLLECTION
    ) -> tuple[list[tuple[str, int]], int]:
        return self._stored(self.store.list_identities, limit, offset, collection)

    def faces_of(self, identity: str, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        return self._stored(self.store.faces_of, identity, collection)

    def find_face(self, face_id: str, collection: str = DEFAULT_COLLECTION) -> StoredFace | None:
        """One face of ``collection`` by id, with its embedding (None: not there)."""
        return self._stored(self.store.find_face, face_id, collection)

    def list_faces(
        self,
        limit: int,
        offset: int,
        collection: str = DEFAULT_COLLECTION,
        identity: str | None = None,
    ) -> tuple[list[FaceRecord], int]:
        """A page of a collection's faces (of one identity, or all), oldest first, and
        their total."""
        return self._stored(self.store.list_faces, limit, offset, collection, identity)

    def close(self) -> None:
        """Stop following the change log, then release the indexes and the database."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=10)
            self._syncer = None
            # No longer holds the change log back (unreachable: its heartbeat goes stale).
            with suppress(StorageUnavailable):
                self.store.forget_follower(self.process_id)
        for index in self._indexes.values():
            index.close()
        self._empty.close()
        self.store.close()


def _by_collection(rows: GalleryRows) -> dict[str, list[int]]:
    """The positions of a snapshot's faces, per collection."""
    collections = rows.collections or [DEFAULT_COLLECTION] * len(rows.face_ids)
    by_collection: dict[str, list[int]] = {}
    for i, name in enumerate(collections):
        by_collection.setdefault(name, []).append(i)
    return by_collection
