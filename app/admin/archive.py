"""Gallery export and import: one versioned file that backs up or moves a gallery.

The file is a ZIP archive, readable with any zip tool and with ``numpy.load`` (it is a
valid ``.npz``). Format ``faceid-gallery``, version 1:

- ``manifest.json``: ``format``, ``format_version``, ``model`` (``name/version`` of the
  model that made the embeddings), ``embedding_dim``, ``faces``, ``identities``,
  ``exported_at``, ``source`` (where it was exported from, without a password),
  ``crops`` (whether sealed crops are included), and the SHA-256 of the two files below.
- ``faces.jsonl``: one JSON object per face, in embedding-row order: ``face_id``,
  ``identity``, ``collection`` (absent in files from before collections: ``default``),
  ``created_at`` (enrolment time, ISO 8601 UTC), ``content_hash`` (SHA-256
  of the photo's bytes, or null for faces enrolled before hashes were kept).
- ``embeddings.npy``: float32 [faces, embedding_dim], L2-normalised.
- ``crops/<face_id>`` (only with ``export --with-crops``): each kept crop exactly as the
  gallery holds it, sealed with FACEID_CROP_KEY (``app.gallery.crops``); they open only
  with that key.

Import checks everything before it writes anything (format, version, model, sizes,
checksums, names), then stores every face in one transaction, keeping face ids and
enrolment times; faces whose id is already in the gallery are left as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.domain_errors import InvalidCollection, InvalidIdentity
from app.gallery.names import validate_collection, validate_identity
from app.gallery.records import utc_now
from app.gallery.storage import DEFAULT_COLLECTION, GalleryStorage, StoredFace

FORMAT = "faceid-gallery"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FACES = "faces.jsonl"
EMBEDDINGS = "embeddings.npy"
CROPS = "crops/"
_HASH = re.compile(r"^[0-9a-f]{64}$")
_MAX_FACE_ID = 64


class ArchiveError(ValueError):
    """A gallery file that cannot be imported (nothing was written)."""


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    faces: int
    identities: int
    crops: int


@dataclass(frozen=True)
class ImportSummary:
    faces_in_file: int
    imported: int
    already_present: int


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_gallery(
    store: GalleryStorage,
    model_id: str,
    path: Path,
    with_crops: bool = False,
    collection: str | None = None,
) -> ExportSummary:
    """Write every face of ``store`` (of one ``collection``, or of all) to ``path``
    (atomically: a partial file is never left under that name). Reads one consistent
    snapshot; the service may keep serving."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    identities: set[tuple[str, str]] = set()
    collections: set[str] = set()
    count = crops = 0
    with tempfile.TemporaryDirectory(prefix="faceid-export-") as tmp:
        rows_file = Path(tmp) / "embeddings.raw"
        meta = io.BytesIO()
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf, rows_file.open("wb") as raw:
            for face in store.iter_faces(with_crops=with_crops, collection=collection):
                raw.write(np.asarray(face.embedding, dtype="<f4").tobytes())
                record = {
                    "face_id": face.face_id,
                    "identity": face.identity,
                    "created_at": face.created_at,
                    "content_hash": face.content_hash,
                    "collection": face.collection,
                }
                meta.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
                identities.add((face.collection, face.identity))
                collections.add(face.collection)
                count += 1
                if with_crops and face.crop is not None:
                    zf.writestr(CROPS + face.face_id, face.crop, zipfile.ZIP_STORED)
                    crops += 1
            raw.flush()
            dim = store.embedding_dim
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": "<f4", "fortran_order": False, "shape": (count, dim)}
            )
            digest = hashlib.sha256(header.getvalue())
            with zf.open(EMBEDDINGS, "w", force_zip64=True) as out:
                out.write(header.getvalue())
                with rows_file.open("rb") as rows:
                    while block := rows.read(1 << 20):
                        digest.update(block)
                        out.write(block)
            faces_bytes = meta.getvalue()
            zf.writestr(FACES, faces_bytes)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "model": model_id,
                "embedding_dim": dim,
                "faces": count,
                "identities": len(identities),
                "collections": sorted(collections),
                "exported_at": utc_now(),
                "source": store.location,
                "crops": with_crops,
                "sha256": {EMBEDDINGS: digest.hexdigest(), FACES: _sha256(faces_bytes)},
            }
            zf.writestr(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False))
    partial.replace(path)
    return ExportSummary(path, count, len(identities), crops)


def read_archive(
    path: Path, model_id: str, embedding_dim: int
) -> tuple[dict[str, Any], list[StoredFace]]:
    """The manifest and faces of a gallery file, checked for a gallery of ``model_id``
    (raises ArchiveError saying what is wrong)."""
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ArchiveError(
            f"{path} is not a gallery file (not a readable ZIP archive): {exc}"
        ) from exc
    with zf:
        names = set(zf.namelist())
        if MANIFEST not in names:
            raise ArchiveError(f"{path} has no {MANIFEST}: it is not a gallery export.")
        try:
            manifest = json.loads(zf.read(MANIFEST))
        except (ValueError, zipfile.BadZipFile) as exc:
            raise ArchiveError(f"{path}: {MANIFEST} is not valid JSON: {exc}") from exc
        _check_manifest(path, manifest, model_id, embedding_dim)
        for member in (FACES, EMBEDDINGS):
            if member not in names:
                raise ArchiveError(f"{path} lacks {member}.")
        try:
            faces_bytes = zf.read(FACES)
            embeddings_bytes = zf.read(EMBEDDINGS)
        except (zipfile.BadZipFile, OSError) as exc:  # a CRC failure: the file is damaged
            raise ArchiveError(f"{path} is damaged: {exc}") from exc
        sums = manifest.get("sha256", {})
        for member, data in ((FACES, faces_bytes), (EMBEDDINGS, embeddings_bytes)):
            if sums.get(member) != _sha256(data):
                raise ArchiveError(
                    f"{path}: {member} does not match its checksum; the file is damaged."
                )
        records = _records(path, faces_bytes)
        embeddings = _embeddings(path, embeddings_bytes, len(records), embedding_dim)
        faces = []
        for record, embedding in zip(records, embeddings, strict=True):
            crop = None
            if manifest.get("crops") and CROPS + record["face_id"] in names:
                crop = zf.read(CROPS + record["face_id"])
            faces.append(
                StoredFace(
                    record["face_id"],
                    record["identity"],
                    embedding,
                    record["created_at"],
                    record["content_hash"],
                    crop,
                    model_id,
                    record["collection"],
                )
            )
    if len(faces) != manifest.get("faces"):
        raise ArchiveError(
            f"{path}: the manifest says {manifest.get('faces')} faces, the file holds {len(faces)}."
        )
    return manifest, faces


def _check_manifest(path: Path, manifest: Any, model_id: str, embedding_dim: int) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(f"{path} is not a {FORMAT} file.")
    version = manifest.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ArchiveError(
            f"{path} has format version {version!r}; this release reads versions up to "
            f"{FORMAT_VERSION}: run a newer release."
        )
    if manifest.get("model") != model_id:
        raise ArchiveError(
            f"{path} was exported from a gallery of model {manifest.get('model')!r}, but this "
            f"gallery's model is {model_id!r}: embeddings of different models cannot be "
            "compared. Import it where that model is served, or move it to the new model with "
            "`python -m app.gallery reembed` (README: Upgrading the model). Nothing was written."
        )
    if manifest.get("embedding_dim") != embedding_dim:
        raise ArchiveError(
            f"{path} holds {manifest.get('embedding_dim')}-d embeddings; the model makes "
            f"{embedding_dim}-d ones."
        )


def _records(path: Path, data: bytes) -> list[dict[str, Any]]:
    records = []
    seen: set[str] = set()
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
            face_id = record["face_id"]
            identity = record["identity"]
            created_at = record["created_at"]
            content_hash = record.get("content_hash")
            collection = record.get("collection", DEFAULT_COLLECTION)
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(
                f"{path}: {FACES} line {number} is not a face record: {exc}"
            ) from exc
        problem = None
        if not isinstance(face_id, str) or not 0 < len(face_id) <= _MAX_FACE_ID:
            problem = "face_id must be a string of 1 to 64 characters"
        elif face_id in seen:
            problem = f"face_id {face_id!r} appears twice"
        elif not isinstance(created_at, str) or not created_at:
            problem = "created_at must be a timestamp string"
        elif content_hash is not None and not (
            isinstance(content_hash, str) and _HASH.match(content_hash)
        ):
            problem = "content_hash must be null or 64 lowercase hex digits"
        else:
            try:
                if not isinstance(identity, str) or validate_identity(identity) != identity:
                    problem = "identity is not a valid, normalised identity name"
                elif (
                    not isinstance(collection, str) or validate_collection(collection) != collection
                ):
                    problem = "collection is not a valid collection name"
            except (InvalidIdentity, InvalidCollection) as exc:
                problem = exc.message
        if problem:
            raise ArchiveError(f"{path}: {FACES} line {number}: {problem}. Nothing was written.")
        seen.add(face_id)
        records.append(
            {
                "face_id": face_id,
                "identity": identity,
                "created_at": created_at,
                "content_hash": content_hash,
                "collection": collection,
            }
        )
    return records


def _embeddings(path: Path, data: bytes, rows: int, dim: int) -> np.ndarray:
    try:
        array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ArchiveError(f"{path}: {EMBEDDINGS} is not a NumPy array: {exc}") from exc
    if array.dtype != np.float32 or array.shape != (rows, dim):
        raise ArchiveError(
            f"{path}: {EMBEDDINGS} is {array.dtype} {array.shape}; "
            f"expected float32 ({rows}, {dim})."
        )
    if not np.isfinite(array).all():
        raise ArchiveError(f"{path}: {EMBEDDINGS} holds non-finite values.")
    return array


def import_gallery(
    store: GalleryStorage, path: Path, collection: str | None = None
) -> ImportSummary:
    """Check ``path`` (``read_archive``), then store its faces in one transaction, each
    in the collection the file names (files from before collections: ``default``), or all
    in ``collection``."""
    _, faces = read_archive(path, store.model_version, store.embedding_dim)
    if collection is not None:
        faces = [dataclasses.replace(face, collection=collection) for face in faces]
    added = store.add_faces(faces, skip_existing=True)
    return ImportSummary(len(faces), len(added), len(faces) - len(added))
