"""What the two gallery engines share: every query and check, written once.

``SqlGalleryStore`` implements ``GalleryStorage`` on top of four engine hooks: a read
query, a transaction (a writer's one takes the engine's writer lock), the change-log
notification and what happens after an erasure. SQL is written with ``?`` placeholders;
the PostgreSQL engine turns them into ``%s``. The schema's statements stay with each
engine (``app.gallery.storage.sqlite``, ``app.gallery.storage.postgres``); the migration
loop is ``app.gallery.storage.schema``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from app.domain_errors import IdentityExists, SameIdentity, StartupError, UnknownIdentity
from app.gallery.storage.base import (
    DEFAULT_COLLECTION,
    Change,
    CollectionSize,
    FaceRecord,
    GalleryRows,
    IdentityMeta,
    KeyRecord,
    MoveMode,
    StoredFace,
    check_embedding,
)

_CHUNK = 500  # values per IN (...) list: far below both engines' parameter limits


class Tx(Protocol):
    """One open transaction of an engine."""

    def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run a statement and return its rows (``?`` placeholders)."""
        ...

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a statement; returns how many rows it changed."""
        ...


class SqlGalleryStore(ABC):
    """The gallery's queries over an engine's connection (see ``GalleryStorage``)."""

    engine: str
    location: str
    model_version: str
    embedding_dim: int
    # How messages name this store, and where an operator points the service instead.
    _noun = "gallery"
    _elsewhere = "point FACEID_DATA_DIR at another directory"
    _insertion_order = "rowid"  # a column that orders faces as they were added
    _name_order = "identity"  # ORDER BY expression listing identities in byte order

    # ------------------------------------------------------------ engine hooks
    @abstractmethod
    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read statement outside any transaction."""

    @abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Tx]:
        """A transaction: a consistent snapshot for reads; for writes, one that holds the
        engine's writer lock, so writers are serialised and change seq order is commit
        order. Raises StorageUnavailable."""

    def _notify(self, tx: Tx, seq: int) -> None:
        """Tell other processes that changes up to ``seq`` were written (if the engine can)."""
        del tx, seq

    def _after_erasure(self) -> None:  # noqa: B027  (a hook: most engines need nothing)
        """Called after a committed erasure (SQLite scrubs its WAL)."""

    # --------------------------------------------------------------- checks
    def check_model_version(self) -> None:
        """Refuse a gallery whose rows were made by another model."""
        rows = self._query(
            "SELECT model_version, COUNT(*) FROM faces GROUP BY model_version "
            "ORDER BY COUNT(*) DESC"
        )
        others = [(str(v), int(n)) for v, n in rows if v != self.model_version]
        if others:
            found = ", ".join(f"{n} faces from model {v!r}" for v, n in others)
            raise StartupError(
                f"The {self._noun} {self.location} holds {found}, but the loaded model is "
                f"{self.model_version!r}: embeddings of different models cannot be compared. "
                f"Serve the model that made the gallery, {self._elsewhere}, or move the "
                "gallery to the new model (README: Upgrading the model)."
            )

    def ping(self) -> None:
        """Raise StorageUnavailable when the database cannot be reached."""
        self._query("SELECT 1")

    # ---------------------------------------------------------------- reads
    def _embeddings(self, blobs: Sequence[object]) -> np.ndarray:
        dim = self.embedding_dim
        blob = b"".join(bytes(b) for b in blobs)  # type: ignore[call-overload]
        if len(blob) != len(blobs) * dim * 4:
            raise StartupError(
                f"The {self._noun} {self.location} holds embeddings that are not {dim}-d "
                "float32; it was made by another model."
            )
        return np.frombuffer(blob, dtype=np.float32).reshape(len(blobs), dim).copy()

    def snapshot(self) -> tuple[GalleryRows, int]:
        """Every stored face and the last change sequence number, in one snapshot."""
        with self._transaction(write=False) as tx:
            rows = tx.rows(
                "SELECT face_id, identity, embedding, collection FROM faces "
                f"ORDER BY {self._insertion_order}"
            )
            seq = max(
                int(tx.rows("SELECT COALESCE(MAX(seq), 0) FROM changes")[0][0]),
                int(tx.rows("SELECT seq FROM change_floor")[0][0]),
            )
        embeddings = self._embeddings([r[2] for r in rows])
        return GalleryRows(
            [str(r[0]) for r in rows],
            [str(r[1]) for r in rows],
            embeddings,
            [str(r[3]) for r in rows],
        ), seq

    def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        """Up to ``limit`` changes after ``seq`` with the added faces that still exist."""
        rows = self._query(
            "SELECT c.seq, c.op, c.face_id, f.identity, f.embedding, f.collection FROM changes c "
            "LEFT JOIN faces f ON c.op = 'add' AND f.face_id = c.face_id "
            "WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
            (seq, limit),
        )
        changes = []
        for seq_, op, face_id, identity, blob, collection in rows:
            embedding = None
            if identity is not None and blob is not None:
                embedding = self._embeddings([blob])[0]
            changes.append(
                Change(
                    int(seq_),
                    "add" if op == "add" else "remove",
                    str(face_id),
                    None if identity is None else str(identity),
                    embedding,
                    None if collection is None else str(collection),
                )
            )
        return changes

    def count(self, collection: str | None = None) -> tuple[int, int]:
        """(identities, faces) of one collection, or of all (identities counted per
        collection: the same name in two collections is two people)."""
        if collection is None:
            row = self._query(
                "SELECT COUNT(*), COALESCE(SUM(n), 0) FROM "
                "(SELECT COUNT(*) AS n FROM faces GROUP BY collection, identity) AS per_identity"
            )[0]
        else:
            row = self._query(
                "SELECT COUNT(DISTINCT identity), COUNT(*) FROM faces WHERE collection = ?",
                (collection,),
            )[0]
        return int(row[0]), int(row[1])

    def collections(self) -> list[CollectionSize]:
        """Every collection that holds a face, by name."""
        rows = self._query(
            "SELECT collection, COUNT(DISTINCT identity), COUNT(*) FROM faces "
            f"GROUP BY collection ORDER BY {self._name_order.replace('identity', 'collection')}"
        )
        return [CollectionSize(str(c), int(i), int(f)) for c, i, f in rows]

    def list_identities(
        self, limit: int, offset: int, collection: str = DEFAULT_COLLECTION
    ) -> tuple[list[tuple[str, int]], int]:
        """A page of (identity, faces) ordered by name, and the total number of identities."""
        page = self._query(
            "SELECT identity, COUNT(*) FROM faces WHERE collection = ? GROUP BY identity "
            f"ORDER BY {self._name_order} LIMIT ? OFFSET ?",
            (collection, limit, offset),
        )
        total = self._query(
            "SELECT COUNT(DISTINCT identity) FROM faces WHERE collection = ?", (collection,)
        )[0][0]
        return [(str(i), int(n)) for i, n in page], int(total)

    def faces_of(self, identity: str, collection: str = DEFAULT_COLLECTION) -> list[FaceRecord]:
        """The faces of one identity, oldest first (empty if unknown)."""
        rows = self._query(
            f"SELECT {_RECORD} FROM faces WHERE collection = ? AND identity = ? "
            f"ORDER BY created_at, {self._insertion_order}",
            (collection, identity),
        )
        return [_record(r) for r in rows]

    def face_qualities(self, collection: str = DEFAULT_COLLECTION) -> dict[str, float]:
        """Face id → quality at enrolment, for the faces of ``collection`` that have one."""
        rows = self._query(
            "SELECT face_id, quality FROM faces WHERE collection = ? AND quality IS NOT NULL",
            (collection,),
        )
        return {str(face_id): float(quality) for face_id, quality in rows}

    def faces_with_hashes(
        self, hashes: Sequence[str], collection: str | None = None
    ) -> list[FaceRecord]:
        """Every face whose photo had one of these content hashes (any identity; in one
        collection, or in any: None)."""
        found: list[FaceRecord] = []
        unique = sorted(set(hashes))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            found += [
                _record(r)
                for r in self._query(
                    f"SELECT {_RECORD} FROM faces WHERE content_hash IN ({marks}) ORDER BY face_id",
                    chunk,
                )
                if collection is None or r[5] == collection
            ]
        return found

    def existing_face_ids(self, face_ids: Sequence[str]) -> set[str]:
        """Those of ``face_ids`` that are stored."""
        with self._transaction(write=False) as tx:
            return self._existing(tx, face_ids)

    def _existing(self, tx: Tx, face_ids: Sequence[str]) -> set[str]:
        present: set[str] = set()
        unique = sorted(set(face_ids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            present |= {
                str(r[0])
                for r in tx.rows(f"SELECT face_id FROM faces WHERE face_id IN ({marks})", chunk)
            }
        return present

    def iter_faces(
        self, with_crops: bool = False, batch: int = 1000, collection: str | None = None
    ) -> Iterator[StoredFace]:
        """Every stored face (of one collection, or all), everything about it, in the
        order the faces were added (the order the service's index holds them), read in one
        snapshot: a long export sees the gallery as it was when it started."""
        crop = "crop" if with_crops else "NULL"
        order = self._insertion_order
        where = "" if collection is None else "AND collection = ? "
        with self._transaction(write=False) as tx:
            after = 0
            while True:
                rows = tx.rows(
                    "SELECT face_id, identity, embedding, model_version, created_at, "
                    f"content_hash, {crop}, {order}, collection FROM faces WHERE {order} > ? "
                    f"{where}ORDER BY {order} LIMIT ?",
                    (after, batch) if collection is None else (after, collection, batch),
                )
                if not rows:
                    return
                embeddings = self._embeddings([r[2] for r in rows])
                for r, embedding in zip(rows, embeddings, strict=True):
                    yield StoredFace(
                        face_id=str(r[0]),
                        identity=str(r[1]),
                        embedding=embedding,
                        created_at=str(r[4]),
                        content_hash=None if r[5] is None else str(r[5]),
                        crop=None if r[6] is None else bytes(r[6]),
                        model_version=str(r[3]),
                        collection=str(r[8]),
                    )
                after = int(rows[-1][7])

    def find_face(self, face_id: str, collection: str = DEFAULT_COLLECTION) -> StoredFace | None:
        """One face of ``collection`` by id, with its embedding (None: no such face there)."""
        rows = self._query(
            "SELECT face_id, identity, embedding, model_version, created_at, content_hash, "
            "collection FROM faces WHERE face_id = ? AND collection = ?",
            (face_id, collection),
        )
        if not rows:
            return None
        r = rows[0]
        return StoredFace(
            face_id=str(r[0]),
            identity=str(r[1]),
            embedding=self._embeddings([r[2]])[0],
            created_at=str(r[4]),
            content_hash=None if r[5] is None else str(r[5]),
            model_version=str(r[3]),
            collection=str(r[6]),
        )

    def list_faces(
        self,
        limit: int,
        offset: int,
        collection: str = DEFAULT_COLLECTION,
        identity: str | None = None,
    ) -> tuple[list[FaceRecord], int]:
        """A page of the faces of ``collection`` (of one identity, or all) in the order
        they were added, and how many there are in all."""
        where = "collection = ?" + ("" if identity is None else " AND identity = ?")
        params: tuple[object, ...] = (collection,) if identity is None else (collection, identity)
        with self._transaction(write=False) as tx:
            page = tx.rows(
                f"SELECT {_RECORD} FROM faces WHERE {where} "
                f"ORDER BY {self._insertion_order} LIMIT ? OFFSET ?",
                (*params, limit, offset),
            )
            total = int(tx.rows(f"SELECT COUNT(*) FROM faces WHERE {where}", params)[0][0])
        return [_record(r) for r in page], total

    def crop_of(self, face_id: str) -> bytes | None:
        """The kept (encrypted) aligned crop of a face, or None."""
        rows = self._query("SELECT crop FROM faces WHERE face_id = ?", (face_id,))
        return None if not rows or rows[0][0] is None else bytes(rows[0][0])

    # --------------------------------------------------------------- writes
    def _log(self, tx: Tx, op: str, face_ids: Sequence[str]) -> int:
        """Append one change per face; returns the last seq (0 when none)."""
        seq = 0
        for face_id in face_ids:
            seq = int(
                tx.rows(
                    "INSERT INTO changes (op, face_id) VALUES (?, ?) RETURNING seq", (op, face_id)
                )[0][0]
            )
        if face_ids:
            self._notify(tx, seq)
        return seq

    def add_faces(self, faces: Sequence[StoredFace], skip_existing: bool = False) -> list[str]:
        """Insert faces and their changes in one committed transaction (all or none);
        returns the ids inserted. ``skip_existing``: faces whose id is already stored are
        left as they are; otherwise such a face fails the whole call."""
        rows = [
            (
                f.face_id,
                f.identity,
                check_embedding(f.embedding, self.embedding_dim).tobytes(),
                self.model_version,
                f.created_at,
                f.content_hash,
                f.crop,
                f.collection,
                f.quality,
            )
            for f in faces
        ]
        if not rows:
            return []
        with self._transaction(write=True) as tx:
            if skip_existing:
                present = self._existing(tx, [r[0] for r in rows])
                rows = [r for r in rows if r[0] not in present]
            for row in rows:
                tx.run(
                    "INSERT INTO faces (face_id, identity, embedding, model_version, created_at, "
                    "content_hash, crop, collection, quality) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            added = [str(r[0]) for r in rows]
            self._log(tx, "add", added)
        return added

    def replace_face(self, identity: str, old_face_id: str, face: StoredFace) -> bool:
        """Insert ``face`` and erase ``old_face_id`` (a face of ``identity`` in
        ``face.collection``) in one transaction: the right face of a photo in place of a
        wrong one. False, and nothing written, when ``identity`` has no such face."""
        row = (
            face.face_id,
            face.identity,
            check_embedding(face.embedding, self.embedding_dim).tobytes(),
            self.model_version,
            face.created_at,
            face.content_hash,
            face.crop,
            face.collection,
            face.quality,
        )
        with self._transaction(write=True) as tx:
            deleted = tx.run(
                "DELETE FROM faces WHERE collection = ? AND identity = ? AND face_id = ?",
                (face.collection, identity, old_face_id),
            )
            if not deleted:
                return False
            tx.run(
                "INSERT INTO faces (face_id, identity, embedding, model_version, created_at, "
                "content_hash, crop, collection, quality) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            self._log(tx, "remove", [old_face_id])
            self._log(tx, "add", [face.face_id])
        self._after_erasure()
        return True

    def add_face(
        self,
        face_id: str,
        identity: str,
        embedding: np.ndarray,
        created_at: str,
        content_hash: str | None = None,
        crop: bytes | None = None,
    ) -> None:
        """Insert one face and its change in one committed transaction."""
        self.add_faces([StoredFace(face_id, identity, embedding, created_at, content_hash, crop)])

    def delete_identity(self, identity: str, collection: str = DEFAULT_COLLECTION) -> list[str]:
        """Erase every face of ``identity`` (embeddings and kept crops); returns the ids."""
        with self._transaction(write=True) as tx:
            rows = tx.rows(
                "DELETE FROM faces WHERE collection = ? AND identity = ? RETURNING face_id",
                (collection, identity),
            )
            face_ids = [str(r[0]) for r in rows]
            self._log(tx, "remove", face_ids)
            self._drop_orphan_metadata(tx, collection)
        if face_ids:
            self._after_erasure()
        return face_ids

    def delete_face(
        self, identity: str, face_id: str, collection: str = DEFAULT_COLLECTION
    ) -> bool:
        """Erase one face of ``identity`` (and its kept crop); False if there is none."""
        with self._transaction(write=True) as tx:
            deleted = tx.run(
                "DELETE FROM faces WHERE collection = ? AND identity = ? AND face_id = ?",
                (collection, identity, face_id),
            )
            if deleted:
                self._log(tx, "remove", [face_id])
                self._drop_orphan_metadata(tx, collection)
        if deleted:
            self._after_erasure()
        return deleted > 0

    def delete_faces(
        self, face_ids: Sequence[str] | None, collection: str = DEFAULT_COLLECTION
    ) -> list[FaceRecord]:
        """Erase the faces of ``collection`` with these ids (None: every face of the
        collection) in one transaction; returns what was erased (ids of other collections
        and unknown ids are ignored)."""
        erased: list[FaceRecord] = []
        with self._transaction(write=True) as tx:
            if face_ids is None:
                erased = [
                    _record(r)
                    for r in tx.rows(
                        f"DELETE FROM faces WHERE collection = ? RETURNING {_RECORD}",
                        (collection,),
                    )
                ]
            else:
                unique = sorted(set(face_ids))
                for start in range(0, len(unique), _CHUNK):
                    chunk = unique[start : start + _CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    erased += [
                        _record(r)
                        for r in tx.rows(
                            f"DELETE FROM faces WHERE collection = ? AND face_id IN ({marks}) "
                            f"RETURNING {_RECORD}",
                            (collection, *chunk),
                        )
                    ]
            self._log(tx, "remove", [r.face_id for r in erased])
            self._drop_orphan_metadata(tx, collection)
        if erased:
            self._after_erasure()
        return erased

    def rename_identity(
        self, identity: str, new_identity: str, collection: str = DEFAULT_COLLECTION
    ) -> list[StoredFace]:
        """Move every face of ``identity`` to ``new_identity``, merging into it if it
        exists (``move_identity`` in mode ``either``; empty: no such identity)."""
        try:
            return self.move_identity(identity, new_identity, collection, "either")
        except UnknownIdentity:
            return []

    def move_identity(
        self, identity: str, target: str, collection: str, mode: MoveMode
    ) -> list[StoredFace]:
        """Move every face of ``identity`` to ``target`` in one transaction: a rename
        (``target`` must not be enrolled: ``IdentityExists``), a merge (it must:
        ``UnknownIdentity``) or either. Ids, enrolment times, content hashes and crops
        stay; the change log gets a ``remove`` and an ``add`` per face, so other processes
        move it too. The metadata moves with a rename, and with a merge when the target
        has none (the target's own wins). Returns the moved faces; ``UnknownIdentity``
        when ``identity`` is not enrolled, ``SameIdentity`` when ``target`` is it."""
        if identity == target:
            raise SameIdentity(f"{identity!r} cannot be renamed or merged into itself.")
        with self._transaction(write=True) as tx:
            exists = self._identity_exists(tx, target, collection)
            if mode == "rename" and exists:
                raise IdentityExists(
                    f"An identity named {target!r} is already enrolled; merge into it instead."
                )
            if mode == "merge" and not exists:
                raise UnknownIdentity(f"No identity named {target!r} is enrolled.")
            rows = tx.rows(
                "UPDATE faces SET identity = ? WHERE collection = ? AND identity = ? "
                "RETURNING face_id, embedding, created_at, content_hash",
                (target, collection, identity),
            )
            if not rows:
                raise UnknownIdentity(f"No identity named {identity!r} is enrolled.")
            moved = [str(r[0]) for r in rows]
            self._log(tx, "remove", moved)
            self._log(tx, "add", moved)
            tx.run(
                "UPDATE identity_meta SET identity = ? WHERE collection = ? AND identity = ? "
                "AND NOT EXISTS (SELECT 1 FROM identity_meta m WHERE m.collection = ? "
                "AND m.identity = ?)",
                (target, collection, identity, collection, target),
            )
            self._drop_orphan_metadata(tx, collection)
        embeddings = self._embeddings([r[1] for r in rows])
        return [
            StoredFace(
                face_id=str(r[0]),
                identity=target,
                embedding=embedding,
                created_at=str(r[2]),
                content_hash=None if r[3] is None else str(r[3]),
                collection=collection,
            )
            for r, embedding in zip(rows, embeddings, strict=True)
        ]

    def move_face(
        self, identity: str, face_id: str, target: str, collection: str = DEFAULT_COLLECTION
    ) -> StoredFace | None:
        """Move one face of ``identity`` to ``target`` (a new identity, or one enrolled)
        in one transaction, logged as a ``remove`` and an ``add``; its id, enrolment time,
        content hash and crop stay. None: ``identity`` has no such face;
        ``SameIdentity``: it is already ``target``'s. An identity left without faces
        loses its metadata."""
        if identity == target:
            raise SameIdentity(f"The face is already enrolled under {target!r}.")
        with self._transaction(write=True) as tx:
            rows = tx.rows(
                "UPDATE faces SET identity = ? WHERE collection = ? AND identity = ? "
                "AND face_id = ? RETURNING face_id, embedding, created_at, content_hash",
                (target, collection, identity, face_id),
            )
            if not rows:
                return None
            self._log(tx, "remove", [face_id])
            self._log(tx, "add", [face_id])
            self._drop_orphan_metadata(tx, collection)
        r = rows[0]
        return StoredFace(
            face_id=str(r[0]),
            identity=target,
            embedding=self._embeddings([r[1]])[0],
            created_at=str(r[2]),
            content_hash=None if r[3] is None else str(r[3]),
            collection=collection,
        )

    @staticmethod
    def _identity_exists(tx: Tx, identity: str, collection: str) -> bool:
        return bool(
            tx.rows(
                "SELECT 1 FROM faces WHERE collection = ? AND identity = ? LIMIT 1",
                (collection, identity),
            )
        )

    @staticmethod
    def _drop_orphan_metadata(tx: Tx, collection: str) -> None:
        """Erase the metadata of the collection's identities that have no face left (an
        erased person leaves no external id behind)."""
        tx.run(
            "DELETE FROM identity_meta WHERE collection = ? AND NOT EXISTS (SELECT 1 FROM "
            "faces f WHERE f.collection = identity_meta.collection "
            "AND f.identity = identity_meta.identity)",
            (collection,),
        )

    # ------------------------------------------------------------- metadata
    def set_metadata(
        self, identity: str, meta: IdentityMeta, collection: str = DEFAULT_COLLECTION
    ) -> bool:
        """Replace the metadata of an enrolled identity (both fields None: erase it);
        False when ``identity`` is not enrolled. The caller checks the size caps."""
        data = None if meta.data is None else _compact_json(meta.data)
        with self._transaction(write=True) as tx:
            if not self._identity_exists(tx, identity, collection):
                return False
            tx.run(
                "DELETE FROM identity_meta WHERE collection = ? AND identity = ?",
                (collection, identity),
            )
            if meta.external_id is not None or data is not None:
                tx.run(
                    "INSERT INTO identity_meta (collection, identity, external_id, data) "
                    "VALUES (?, ?, ?, ?)",
                    (collection, identity, meta.external_id, data),
                )
        return True

    def metadata_of(
        self, identities: Sequence[str], collection: str = DEFAULT_COLLECTION
    ) -> dict[str, IdentityMeta]:
        """The metadata of those ``identities`` that have some."""
        found: dict[str, IdentityMeta] = {}
        unique = sorted(set(identities))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for identity, external_id, data in self._query(
                "SELECT identity, external_id, data FROM identity_meta WHERE collection = ? "
                f"AND identity IN ({marks})",
                (collection, *chunk),
            ):
                found[str(identity)] = IdentityMeta(
                    None if external_id is None else str(external_id),
                    None if data is None else json.loads(data),
                )
        return found

    # ----------------------------------------------------------- change log
    def change_floor(self) -> int:
        """The seq up to which the change log was pruned (0: never)."""
        return int(self._query("SELECT seq FROM change_floor")[0][0])

    def change_log_size(self) -> int:
        """Rows in the change log."""
        return int(self._query("SELECT COUNT(*) FROM changes")[0][0])

    def report_follower(self, process_id: str, applied_seq: int, now: float) -> None:
        """Record (insert or update) a follower's applied seq and heartbeat."""
        with self._transaction(write=True) as tx:
            updated = tx.run(
                "UPDATE followers SET applied_seq = ?, seen_at = ? WHERE process_id = ?",
                (applied_seq, now, process_id),
            )
            if not updated:
                tx.run(
                    "INSERT INTO followers (process_id, applied_seq, seen_at) VALUES (?, ?, ?)",
                    (process_id, applied_seq, now),
                )

    def forget_follower(self, process_id: str) -> None:
        """Remove a follower's row (it no longer holds the log back)."""
        with self._transaction(write=True) as tx:
            tx.run("DELETE FROM followers WHERE process_id = ?", (process_id,))

    def prune_changes(self, live_since: float) -> int:
        """Delete every change that all followers seen since ``live_since`` (epoch s)
        have applied (all of them when none is), forget the followers not seen since, and
        raise ``change_floor`` to the last deleted seq; returns how many were deleted. A
        process that stops for longer than that finds itself below the floor and reloads
        the gallery (``GalleryService.sync``)."""
        with self._transaction(write=True) as tx:
            tx.run("DELETE FROM followers WHERE seen_at < ?", (live_since,))
            last = int(tx.rows("SELECT COALESCE(MAX(seq), 0) FROM changes")[0][0])
            slowest = tx.rows("SELECT MIN(applied_seq) FROM followers")[0][0]
            mark = last if slowest is None else min(last, int(slowest))
            floor = int(tx.rows("SELECT seq FROM change_floor")[0][0])
            if mark <= floor:
                return 0
            deleted = tx.run("DELETE FROM changes WHERE seq <= ?", (mark,))
            tx.run("UPDATE change_floor SET seq = ?", (mark,))
        return deleted

    # ----------------------------------------------------------------- keys
    def api_keys(self) -> list[KeyRecord]:
        """Every API key record, revoked ones included, oldest first."""
        rows = self._query(
            "SELECT key_id, secret_hash, role, collections, created_at, name, revoked_at "
            "FROM api_keys ORDER BY version"
        )
        return [
            KeyRecord(
                str(r[0]),
                str(r[1]),
                str(r[2]),
                tuple(json.loads(r[3])),
                str(r[4]),
                None if r[5] is None else str(r[5]),
                None if r[6] is None else str(r[6]),
            )
            for r in rows
        ]

    def keys_version(self) -> int:
        """Grows with every key created or revoked (0: none ever)."""
        return int(self._query("SELECT COALESCE(MAX(version), 0) FROM api_keys")[0][0])

    def add_key(self, key: KeyRecord) -> None:
        """Store a new key record (and wake the other processes)."""
        with self._transaction(write=True) as tx:
            version = self._next_key_version(tx)
            tx.run(
                "INSERT INTO api_keys (key_id, secret_hash, role, collections, created_at, "
                "name, revoked_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key.key_id,
                    key.secret_hash,
                    key.role,
                    json.dumps(list(key.collections)),
                    key.created_at,
                    key.name,
                    key.revoked_at,
                    version,
                ),
            )
            self._notify(tx, 0)

    def revoke_key(self, key_id: str, when: str) -> bool:
        """Mark a live key revoked at ``when``; False if there is no such live key."""
        with self._transaction(write=True) as tx:
            version = self._next_key_version(tx)
            changed = tx.run(
                "UPDATE api_keys SET revoked_at = ?, version = ? "
                "WHERE key_id = ? AND revoked_at IS NULL",
                (when, version, key_id),
            )
            if changed:
                self._notify(tx, 0)
        return changed > 0

    @staticmethod
    def _next_key_version(tx: Tx) -> int:
        return int(tx.rows("SELECT COALESCE(MAX(version), 0) + 1 FROM api_keys")[0][0])


def _compact_json(data: dict[str, object]) -> str:
    """``data`` as the compact JSON text that is stored (and size-capped)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


_RECORD = "face_id, identity, model_version, created_at, content_hash, collection"


def _record(row: Sequence[Any]) -> FaceRecord:
    face_id, identity, model_version, created_at, content_hash, collection = row
    return FaceRecord(
        str(face_id),
        str(identity),
        str(model_version),
        str(created_at),
        None if content_hash is None else str(content_hash),
        str(collection),
    )
