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

All methods block; the API calls them in a worker thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from app.domain_errors import StorageUnavailable
from app.gallery.crops import CropVault
from app.gallery.records import new_face, utc_now
from app.gallery.search.index import GalleryIndex
from app.gallery.storage import FaceRecord, GalleryStorage

log = logging.getLogger("faceid.gallery")

_BATCH = 1000  # changes read per query while catching up


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


class GalleryService:
    """The gallery as the API sees it: enroll, erase, list, match, follow other processes."""

    def __init__(
        self,
        store: GalleryStorage,
        index: GalleryIndex,
        change_seq: int = 0,
        vault: CropVault | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.vault = vault
        self._write_lock = threading.Lock()
        self._change_seq = change_seq
        self._storage_ok = True
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None

    @classmethod
    def open(
        cls,
        store: GalleryStorage,
        ann_min_faces: int = 0,
        search_threads: int = 0,
        vault: CropVault | None = None,
    ) -> GalleryService:
        """Load every stored face into a fresh index; from ``ann_min_faces`` faces on
        (0: never), it builds an approximate index in the background; ``search_threads``
        (0: every core) split one exact scan of a large gallery. With a ``vault``, enrolled
        faces keep their aligned crops, sealed."""
        rows, seq = store.snapshot()
        index = GalleryIndex(
            store.embedding_dim, ann_min_faces=ann_min_faces, search_threads=search_threads
        )
        index.add_many(rows.face_ids, rows.identities, rows.embeddings)
        return cls(store, index, seq, vault)

    # ---------------------------------------------------------------- counts
    @property
    def faces(self) -> int:
        return len(self.index)

    @property
    def identities(self) -> int:
        return self.index.identities

    @property
    def change_seq(self) -> int:
        """The last change-log sequence number applied to the index (every change up to
        it is reflected; this process's own later writes are too)."""
        return self._change_seq

    @property
    def storage_ok(self) -> bool:
        """False while the last database access failed."""
        return self._storage_ok

    # ---------------------------------------------------------------- writes
    def _storage(self, ok: bool) -> None:
        if ok != self._storage_ok:
            if ok:
                log.warning("gallery database reachable again", extra={"db": self.store.location})
            else:
                log.error("gallery database unreachable", extra={"db": self.store.location})
        self._storage_ok = ok

    def enroll(
        self,
        identity: str,
        embedding: np.ndarray,
        content_hash: str | None = None,
        crop: np.ndarray | None = None,
    ) -> Enrollment:
        """Store one face durably, then make it matchable (StorageUnavailable: nothing
        was stored)."""
        return self.enroll_many([NewFace(identity, embedding, content_hash, crop)])[0]

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
            )
            for face in faces
        ]
        with self._write_lock:
            try:
                self.store.add_faces(rows)
            except StorageUnavailable:
                self._storage(False)
                raise
            self._storage(True)
            for row in rows:
                self.index.add(row.face_id, row.identity, row.embedding)
        return [Enrollment(r.face_id, r.identity, r.created_at) for r in rows]

    def delete_identity(self, identity: str) -> int:
        """Erase every face of ``identity``; 0 if it was not enrolled."""
        with self._write_lock:
            try:
                face_ids = self.store.delete_identity(identity)
            except StorageUnavailable:
                self._storage(False)
                raise
            self._storage(True)
            for face_id in face_ids:
                self.index.remove_face(face_id)
        return len(face_ids)

    def delete_face(self, identity: str, face_id: str) -> bool:
        """Erase one face of ``identity``; False if there is no such face."""
        with self._write_lock:
            try:
                deleted = self.store.delete_face(identity, face_id)
            except StorageUnavailable:
                self._storage(False)
                raise
            self._storage(True)
            if deleted:
                self.index.remove_face(face_id)
        return deleted

    # ------------------------------------------------------------------ sync
    def sync(self) -> int:
        """Apply every change after ``change_seq`` to the index; returns how many
        (raises StorageUnavailable)."""
        applied = 0
        with self._write_lock:
            while True:
                try:
                    changes = self.store.changes_since(self._change_seq, _BATCH)
                except StorageUnavailable:
                    self._storage(False)
                    raise
                self._storage(True)
                for change in changes:
                    if change.op == "remove":
                        self.index.remove_face(change.face_id)
                    elif (
                        change.identity is not None
                        and change.embedding is not None
                        and change.face_id not in self.index
                    ):
                        self.index.add(change.face_id, change.identity, change.embedding)
                    self._change_seq = change.seq
                applied += len(changes)
                if len(changes) < _BATCH:
                    return applied

    def start_sync(self, poll_s: float = 0.25) -> None:
        """Follow the change log in a background thread until ``close``."""
        if self._syncer is not None:
            return
        self._syncer = threading.Thread(
            target=self._follow, args=(poll_s,), name="faceid-gallery-sync", daemon=True
        )
        self._syncer.start()

    def _follow(self, poll_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
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
    def list_identities(self, limit: int, offset: int) -> tuple[list[tuple[str, int]], int]:
        try:
            return self.store.list_identities(limit, offset)
        except StorageUnavailable:
            self._storage(False)
            raise

    def faces_of(self, identity: str) -> list[FaceRecord]:
        try:
            return self.store.faces_of(identity)
        except StorageUnavailable:
            self._storage(False)
            raise

    def close(self) -> None:
        """Stop following the change log, then release the index and the database."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=10)
            self._syncer = None
        self.index.close()
        self.store.close()
