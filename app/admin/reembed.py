"""Move a gallery to a new model: re-embed every face into a gallery for that model.

``python -m app.gallery reembed`` reads the current gallery (the one the running service
uses; it is only read, so the old service keeps serving) and writes a new gallery for the
new model, face by face, keeping each face's id, identity, enrolment time and content hash:

1. ``--photos DIR``: every photo under DIR (any layout, any file names) is hashed; a face
   whose stored content hash matches a photo is re-enrolled from that photo through the
   new model's pipeline (the photo's largest face, as at enrolment).
2. ``--from-crops``: a face not found among the photos, with a kept crop
   (``FACEID_KEEP_ALIGNED_CROPS``), is re-embedded from its crop, opened with
   FACEID_CROP_KEY; no photo is needed.

Faces already in the new gallery are skipped, so an interrupted run resumes. Faces that
neither way can reach are listed in the report (their people must be enrolled again).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from app.admin.offline import OfflineEmbedder
from app.gallery.crops import CropVault
from app.gallery.records import moved_face, utc_now
from app.gallery.storage import FaceRecord, GalleryStorage, content_hash
from faces import ImageError
from faces.folders import IMAGE_SUFFIXES

_CHUNK = 64


@dataclass
class ReembedReport:
    """What ``reembed`` did (written as JSON)."""

    source: str
    target: str
    from_model: str
    to_model: str
    faces: int = 0
    already_done: int = 0
    from_photos: int = 0
    from_crops: int = 0
    missing: list[dict[str, str]] = field(default_factory=list)
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None

    @property
    def complete(self) -> bool:
        return not self.missing

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "faceid-reembed-report/1",
            "source": self.source,
            "target": self.target,
            "from_model": self.from_model,
            "to_model": self.to_model,
            "faces": self.faces,
            "already_done": self.already_done,
            "from_photos": self.from_photos,
            "from_crops": self.from_crops,
            "missing": self.missing,
            "complete": self.complete,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


def _photos_by_hash(root: Path) -> dict[str, Path]:
    """SHA-256 of every photo's bytes under ``root`` (recursively) → one such photo."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            try:
                found.setdefault(content_hash(path.read_bytes()), path)
            except OSError:
                continue  # unreadable: its faces stay pending, then reported missing
    return found


def reembed(
    source: GalleryStorage,
    target: GalleryStorage,
    embedder: OfflineEmbedder,
    photos: Path | None = None,
    crop_vault: CropVault | None = None,
    use_crops: bool = False,
    keep_crops: bool = False,
    progress: bool = True,
    collection: str | None = None,
) -> ReembedReport:
    """Re-embed every face of ``source`` (of one ``collection``, or all; each keeps its
    collection) into ``target`` with ``embedder``'s model (see the module docstring).
    ``use_crops``: faces without a photo are re-embedded from their kept
    crops, opened with ``crop_vault``; ``keep_crops``: the new gallery keeps crops too,
    sealed with ``crop_vault``."""
    if (use_crops or keep_crops) and crop_vault is None:
        raise ValueError("kept crops need a crop vault (FACEID_CROP_KEY)")
    report = ReembedReport(
        source.location, target.location, source.model_version, target.model_version
    )
    records = [
        FaceRecord(
            f.face_id,
            f.identity,
            str(f.model_version),
            f.created_at,
            f.content_hash,
            f.collection,
        )
        for f in source.iter_faces(collection=collection)
    ]
    report.faces = len(records)
    done = target.existing_face_ids([r.face_id for r in records])
    pending = [r for r in records if r.face_id not in done]
    report.already_done = len(records) - len(pending)
    sealer = crop_vault if keep_crops else None
    opener = crop_vault if use_crops else None
    with tqdm(total=len(pending), unit="face", disable=not progress, desc="re-embed") as bar:
        if photos is not None and pending:
            pending = _from_photos(
                pending, _photos_by_hash(photos), target, embedder, sealer, report, bar
            )
        if opener is not None and pending:
            pending = _from_crops(
                pending, source, target, embedder, opener, keep_crops, report, bar
            )
    report.missing = [{"face_id": r.face_id, "identity": r.identity} for r in pending]
    report.finished_at = utc_now()
    return report


def _from_photos(
    pending: list[FaceRecord],
    photos: dict[str, Path],
    target: GalleryStorage,
    embedder: OfflineEmbedder,
    sealer: CropVault | None,
    report: ReembedReport,
    bar: tqdm,  # type: ignore[type-arg]
) -> list[FaceRecord]:
    """Re-enrol the faces whose photo is at hand; returns those still pending."""
    by_photo: dict[Path, list[FaceRecord]] = defaultdict(list)
    left = []
    for record in pending:
        photo = photos.get(record.content_hash or "")
        if photo is None:
            left.append(record)
        else:
            by_photo[photo].append(record)
    items = list(by_photo.items())
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]

        def largest_face(item: tuple[Path, list[FaceRecord]]) -> Any:
            try:
                faces = embedder.faces(item[0].read_bytes())
            except (OSError, ImageError):
                return None
            return faces[0] if faces else None

        found = list(embedder.pool.map(largest_face, chunk))
        usable = [(records, face) for (_, records), face in zip(chunk, found, strict=True) if face]
        for (_, records), face in zip(chunk, found, strict=True):
            if face is None:
                left += records
        embeddings = embedder.embed([face.crop for _, face in usable])
        rows = [
            moved_face(r, embedding, sealer.seal(r.face_id, face.crop) if sealer else None)
            for (records, face), embedding in zip(usable, embeddings, strict=True)
            for r in records
        ]
        report.from_photos += len(target.add_faces(rows, skip_existing=True))
        bar.update(len(rows))
    return left


def _from_crops(
    pending: list[FaceRecord],
    source: GalleryStorage,
    target: GalleryStorage,
    embedder: OfflineEmbedder,
    vault: CropVault,
    keep_crops: bool,
    report: ReembedReport,
    bar: tqdm,  # type: ignore[type-arg]
) -> list[FaceRecord]:
    """Re-embed the faces that kept a crop; returns those still pending."""
    left = []
    for start in range(0, len(pending), _CHUNK):
        chunk = pending[start : start + _CHUNK]
        ready = []
        for record in chunk:
            sealed = source.crop_of(record.face_id)
            if sealed is None:
                left.append(record)
            else:
                ready.append((record, sealed, vault.open(record.face_id, sealed)))
        embeddings = embedder.embed([crop for _, _, crop in ready])
        rows = [  # a kept crop is copied as it is: same face id, same key, still opens
            moved_face(r, embedding, sealed if keep_crops else None)
            for (r, sealed, _), embedding in zip(ready, embeddings, strict=True)
        ]
        report.from_crops += len(target.add_faces(rows, skip_existing=True))
        bar.update(len(rows))
    return left
