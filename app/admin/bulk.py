"""Bulk enrolment: every photo of a folder-per-person tree into the gallery.

``python -m app.gallery enroll DIR`` runs ``enroll_folder``. Each photo goes through the
service's own pipeline, model and enrolment rule (``app.admin.offline``), in chunks:
the chunk's photos are read and hashed (SHA-256 of their bytes), those already enrolled
under the same identity are skipped, the rest are detected in parallel threads and
embedded in batches, and the chunk's faces are written in one transaction through the
gallery storage (with their change-log entries, so a running service picks them up).
An interrupted run loses at most the chunk in flight, and a re-run skips what was
stored: the outcome is the same as one uninterrupted run, without duplicates.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from app.admin.offline import OfflineEmbedder
from app.domain_errors import DomainError
from app.gallery.crops import CropVault
from app.gallery.names import validate_identity
from app.gallery.records import new_face, utc_now
from app.gallery.storage import DEFAULT_COLLECTION, GalleryStorage, content_hash
from faces import AlignedFace, ImageError
from faces.folders import list_identities, photos_in

# Outcomes of one photo, as the report counts them.
STATUSES = (
    "enrolled",
    "already_enrolled",  # the same bytes are enrolled under this identity already
    "duplicate",  # the same bytes as an earlier photo of this identity in this run
    "no_face",
    "low_quality",
    "unreadable",  # not a readable, decodable image (or over the size caps)
    "invalid_identity",  # the folder's name is not a valid identity name
)


@dataclass(frozen=True)
class Shard:
    """Share ``index`` (1-based) of ``count``: a stable split of the people of a photo
    tree. A person's photos all fall in one share, chosen from the SHA-256 of their folder
    name (the same on every machine and run), so no two shards ever enrol the same photo
    under the same person, and the content-hash check that makes a rerun skip what is
    stored works within each shard as in one run."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` with 1 <= I <= N (ValueError otherwise)."""
        index, sep, count = text.partition("/")
        if not (sep and index.isdigit() and count.isdigit()):
            raise ValueError(f"a shard is I/N, e.g. 1/4, not {text!r}")
        shard = cls(int(index), int(count))
        if not 1 <= shard.index <= shard.count:
            raise ValueError(f"shard {text!r}: I must be between 1 and N")
        return shard

    def owns(self, folder: str) -> bool:
        """Whether the person of this folder name is in this share."""
        digest = hashlib.sha256(folder.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class BulkReport:
    """What ``enroll_folder`` did, per person and in total (written as JSON)."""

    root: str
    model: str
    gallery: str
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    interrupted: bool = False
    totals: Counter[str] = field(default_factory=Counter)
    identities: dict[str, dict[str, Any]] = field(default_factory=dict)
    shard: str | None = None

    def record(self, identity: str, photo: Path, status: str, detail: str = "") -> None:
        """Count one photo's outcome; anything but a success is listed with its reason."""
        entry = self.identities.setdefault(identity, {s: 0 for s in STATUSES} | {"problems": []})
        entry[status] += 1
        self.totals[status] += 1
        if status not in ("enrolled", "already_enrolled"):
            entry["problems"].append({"photo": photo.name, "status": status, "detail": detail})

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "faceid-bulk-enrolment-report/1",
            "root": self.root,
            "model": self.model,
            "gallery": self.gallery,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "interrupted": self.interrupted,
            "shard": self.shard,
            "totals": {s: self.totals.get(s, 0) for s in STATUSES}
            | {"photos": sum(self.totals.values())},
            "identities": self.identities,
        }


@dataclass(frozen=True)
class _Photo:
    identity: str
    path: Path
    data: bytes
    digest: str


def _listing(root: Path) -> list[tuple[str, str | None, Path]]:
    """(folder name, valid identity name or None, photo) for every photo under ``root``."""
    jobs = []
    for folder in list_identities(root):
        try:
            identity: str | None = validate_identity(folder.name)
        except DomainError:
            identity = None
        jobs += [(folder.name, identity, photo) for photo in photos_in(folder)]
    return jobs


def _enrollable(embedder: OfflineEmbedder, data: bytes) -> AlignedFace | DomainError | ImageError:
    try:
        return embedder.policy.enrollable(embedder.faces(data))
    except (DomainError, ImageError) as exc:
        return exc


def enroll_folder(
    root: Path,
    store: GalleryStorage,
    embedder: OfflineEmbedder,
    vault: CropVault | None = None,
    chunk: int = 64,
    progress: bool = True,
    report: BulkReport | None = None,
    collection: str = DEFAULT_COLLECTION,
    shard: Shard | None = None,
) -> BulkReport:
    """Enrol every photo of ``root/<identity>/`` into ``collection`` (see the module
    docstring) and return the report (``report``, if given, is filled in as the run goes,
    so that a caller can write it even when the run stops part-way: an exception is
    re-raised with the report marked ``interrupted``). With ``shard``, only the people of
    that share (``Shard.owns``): N processes or machines, each with its own shard of the
    same N, enrol every photo exactly once between them."""
    if report is None:
        report = BulkReport(str(root), embedder.card.model_id, store.location)
    jobs = _listing(root)
    if shard is not None:
        report.shard = str(shard)
        jobs = [job for job in jobs if shard.owns(job[0])]
    seen: dict[tuple[str, str], Path] = {}
    try:
        with tqdm(total=len(jobs), unit="photo", disable=not progress, desc="enrol") as bar:
            for start in range(0, len(jobs), chunk):
                part = jobs[start : start + chunk]
                _enroll_chunk(part, store, embedder, vault, report, seen, collection)
                bar.update(len(part))
    except BaseException:
        report.interrupted = True
        raise
    finally:
        report.finished_at = utc_now()
    return report


def _enroll_chunk(
    part: list[tuple[str, str | None, Path]],
    store: GalleryStorage,
    embedder: OfflineEmbedder,
    vault: CropVault | None,
    report: BulkReport,
    seen: dict[tuple[str, str], Path],
    collection: str = DEFAULT_COLLECTION,
) -> None:
    photos: list[_Photo] = []
    for folder, identity, path in part:
        if identity is None:
            report.record(
                folder, path, "invalid_identity", "the folder name is not a valid identity"
            )
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.record(identity, path, "unreadable", str(exc))
            continue
        photos.append(_Photo(identity, path, data, content_hash(data)))
    stored = {
        (f.identity, f.content_hash)
        for f in store.faces_with_hashes([p.digest for p in photos], collection)
    }
    todo = []
    for photo in photos:
        key = (photo.identity, photo.digest)
        if key in stored:
            report.record(photo.identity, photo.path, "already_enrolled")
        elif key in seen:
            report.record(
                photo.identity, photo.path, "duplicate", f"same bytes as {seen[key].name}"
            )
        else:
            seen[key] = photo.path
            todo.append(photo)
    found = list(embedder.pool.map(lambda p: _enrollable(embedder, p.data), todo))
    accepted: list[tuple[_Photo, AlignedFace]] = []
    for photo, result in zip(todo, found, strict=True):
        if isinstance(result, DomainError):
            report.record(photo.identity, photo.path, result.code, result.message)
        elif isinstance(result, ImageError):
            report.record(
                photo.identity, photo.path, "unreadable", f"{result.code}: {result.message}"
            )
        else:
            accepted.append((photo, result))
    embeddings = embedder.embed([face.crop for _, face in accepted])
    created_at = utc_now()
    rows = [
        new_face(
            photo.identity,
            embedding,
            created_at=created_at,
            content_hash=photo.digest,
            crop=face.crop,
            vault=vault,
            collection=collection,
            quality=face.quality.score,
        )
        for (photo, face), embedding in zip(accepted, embeddings, strict=True)
    ]
    store.add_faces(rows)  # the chunk's faces, all or none
    for photo, _ in accepted:
        report.record(photo.identity, photo.path, "enrolled")


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report from the reports of the shards of one enrolment (``enroll --shard``):
    totals added up, each person's counts and problems put together, the shards listed."""
    if not reports:
        raise ValueError("no report to merge")
    formats = {r.get("format") for r in reports}
    if formats != {"faceid-bulk-enrolment-report/1"}:
        raise ValueError(f"not bulk enrolment reports: {sorted(map(str, formats))}")
    totals: Counter[str] = Counter()
    identities: dict[str, dict[str, Any]] = {}
    for report in reports:
        totals.update(report["totals"])
        for name, entry in report["identities"].items():
            merged = identities.setdefault(name, {s: 0 for s in STATUSES} | {"problems": []})
            for status in STATUSES:
                merged[status] += entry.get(status, 0)
            merged["problems"] += entry.get("problems", [])
    finished = [r.get("finished_at") for r in reports]
    return {
        "format": "faceid-bulk-enrolment-report/1",
        "root": reports[0]["root"],
        "model": reports[0]["model"],
        "gallery": reports[0]["gallery"],
        "started_at": min(r["started_at"] for r in reports),
        "finished_at": None if None in finished else max(str(f) for f in finished),
        "interrupted": any(r.get("interrupted") for r in reports),
        "shard": None,
        "shards": sorted(str(r.get("shard")) for r in reports),
        "totals": {s: totals.get(s, 0) for s in [*STATUSES, "photos"]},
        "identities": dict(sorted(identities.items())),
    }
