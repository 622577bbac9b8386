"""How a face's gallery row is made: the one constructor every writer uses.

Enrolment (``POST /identities/{identity}/faces``), bulk enrolment and re-embedding all
build their rows here, so a face always gets the same things: a random id (or, when a
face moves to a new model, the id it had), the enrolment time, the SHA-256 of its photo
and, with a crop vault, its aligned crop sealed under its own id.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np

from app.gallery.crops import CropVault
from app.gallery.storage.base import DEFAULT_COLLECTION, FaceRecord, StoredFace


def utc_now() -> str:
    """Now, as the gallery records enrolment times (ISO 8601, microseconds, Z)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_face(
    identity: str,
    embedding: np.ndarray,
    *,
    created_at: str,
    content_hash: str | None,
    crop: np.ndarray | None = None,
    vault: CropVault | None = None,
    collection: str = DEFAULT_COLLECTION,
    quality: float | None = None,
) -> StoredFace:
    """A newly enrolled face's row: a fresh random id; its aligned ``crop`` is kept,
    sealed, only when there is a ``vault``; ``quality`` as enrolment judged the face."""
    face_id = str(uuid.uuid4())
    sealed = vault.seal(face_id, crop) if vault is not None and crop is not None else None
    return StoredFace(
        face_id,
        identity,
        embedding,
        created_at,
        content_hash,
        sealed,
        collection=collection,
        quality=None if quality is None else float(quality),
    )


def moved_face(record: FaceRecord, embedding: np.ndarray, sealed_crop: bytes | None) -> StoredFace:
    """The face ``record`` re-embedded by another model: same id, identity, enrolment time
    and content hash; ``sealed_crop`` as the new gallery keeps it (or None)."""
    return StoredFace(
        record.face_id,
        record.identity,
        embedding,
        record.created_at,
        record.content_hash,
        sealed_crop,
    )
