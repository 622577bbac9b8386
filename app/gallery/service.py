"""Keeps the SQLite store and the in-memory index consistent.

Writes go to the database first (one committed transaction) and then to the index, under
one lock, so a request that follows an answered enrollment or deletion sees it, and a
failed database write leaves the index untouched. All methods block; the API calls them
in a worker thread.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from app.gallery.index import GalleryIndex
from app.gallery.store import FaceRecord, GalleryStore


@dataclass(frozen=True)
class Enrollment:
    face_id: str
    identity: str
    created_at: str


class GalleryService:
    """The gallery as the API sees it: enroll, erase, list, match."""

    def __init__(self, store: GalleryStore, index: GalleryIndex) -> None:
        self.store = store
        self.index = index
        self._write_lock = threading.Lock()

    @classmethod
    def open(
        cls, store: GalleryStore, ann_min_faces: int = 0, search_threads: int = 0
    ) -> GalleryService:
        """Load every stored face into a fresh index; from ``ann_min_faces`` faces on
        (0: never), it builds an approximate index in the background; ``search_threads``
        (0: every core) split one exact scan of a large gallery."""
        rows = store.load_all()
        index = GalleryIndex(
            store.embedding_dim, ann_min_faces=ann_min_faces, search_threads=search_threads
        )
        index.add_many(rows.face_ids, rows.identities, rows.embeddings)
        return cls(store, index)

    # ---------------------------------------------------------------- counts
    @property
    def faces(self) -> int:
        return len(self.index)

    @property
    def identities(self) -> int:
        return self.index.identities

    # ---------------------------------------------------------------- writes
    def enroll(self, identity: str, embedding: np.ndarray) -> Enrollment:
        """Store one face durably, then make it matchable."""
        face_id = str(uuid.uuid4())
        created_at = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        with self._write_lock:
            self.store.add_face(face_id, identity, embedding, created_at)
            self.index.add(face_id, identity, embedding)
        return Enrollment(face_id, identity, created_at)

    def delete_identity(self, identity: str) -> int:
        """Erase every face of ``identity``; 0 if it was not enrolled."""
        with self._write_lock:
            deleted = self.store.delete_identity(identity)
            self.index.remove_identity(identity)
        return deleted

    def delete_face(self, identity: str, face_id: str) -> bool:
        """Erase one face of ``identity``; False if there is no such face."""
        with self._write_lock:
            deleted = self.store.delete_face(identity, face_id)
            if deleted:
                self.index.remove_face(face_id)
        return deleted

    # ----------------------------------------------------------------- reads
    def list_identities(self, limit: int, offset: int) -> tuple[list[tuple[str, int]], int]:
        return self.store.list_identities(limit, offset)

    def faces_of(self, identity: str) -> list[FaceRecord]:
        return self.store.faces_of(identity)

    def close(self) -> None:
        self.index.close()
        self.store.close()
