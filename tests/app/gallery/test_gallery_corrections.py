"""Corrections on both engines: rename, merge, move one face, identity metadata; each one
transaction, logged, seen by another process, keeping face ids, times and hashes, and
leaving everything as it was when refused."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from pg_testkit import wait_until

from app.domain_errors import IdentityExists, SameIdentity, UnknownIdentity
from app.gallery.service import GalleryService, NewFace
from app.gallery.storage import GalleryStorage
from app.gallery.storage.base import IdentityMeta

DIM = 8
Opener = Callable[[], GalleryStorage]


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _who(service: GalleryService, seed: int, collection: str = "c") -> str | None:
    found = service.index_of(collection).search(_vec(seed)[None], top_k=1)[0]
    return found[0][0] if found else None


def _state(service: GalleryService) -> dict[str, tuple[str, str, str | None]]:
    return {
        f.face_id: (f.identity, f.created_at, f.content_hash)
        for f in service.store.iter_faces(collection="c")
    }


def test_rename_merge_and_move_keep_faces_and_reach_another_process(opener: Opener) -> None:
    a = GalleryService.open(opener())
    b = GalleryService.open(opener())
    b.start_sync(poll_s=0.05)
    try:
        ada1, ada2, bob, carl = a.enroll_many(
            [
                NewFace("Ada", _vec(1), "h1", collection="c"),
                NewFace("Ada", _vec(2), "h2", collection="c"),
                NewFace("Bob", _vec(3), "h3", collection="c"),
                NewFace("Carl", _vec(4), "h4", collection="c"),
            ]
        )
        before = _state(a)
        assert a.set_metadata("Ada", IdentityMeta("emp-1", {"team": "x"}), "c")
        # refusals change nothing
        with pytest.raises(IdentityExists):
            a.move_identity("Ada", "Bob", "c", "rename")
        with pytest.raises(UnknownIdentity):
            a.move_identity("Ada", "Nobody", "c", "merge")
        with pytest.raises(UnknownIdentity):
            a.move_identity("Nobody", "Bob", "c", "merge")
        with pytest.raises(SameIdentity):
            a.move_identity("Ada", "Ada", "c", "merge")
        with pytest.raises(SameIdentity):
            a.move_face("Ada", ada1.face_id, "Ada", "c")
        assert a.move_face("Bob", ada1.face_id, "Carl", "c") is None  # not Bob's face
        assert _state(a) == before
        assert a.store.change_log_size() == 4  # the refusals logged nothing

        # rename: the metadata follows
        assert a.move_identity("Ada", "Ada L", "c", "rename") == 2
        assert a.metadata_of(["Ada", "Ada L"], "c") == {
            "Ada L": IdentityMeta("emp-1", {"team": "x"})
        }
        # move one face to a new identity, then merge Carl into Bob
        moved = a.move_face("Ada L", ada2.face_id, "Dora", "c")
        assert moved is not None and moved.face_id == ada2.face_id
        assert a.move_identity("Carl", "Bob", "c", "merge") == 1
        after = _state(a)
        assert set(after) == set(before)  # no face lost or made
        for face_id, (identity, created, digest) in after.items():
            assert (created, digest) == before[face_id][1:]
            assert (
                identity
                == {
                    ada1.face_id: "Ada L",
                    ada2.face_id: "Dora",
                    bob.face_id: "Bob",
                    carl.face_id: "Bob",
                }[face_id]
            )
        assert [_who(a, s) for s in (1, 2, 3, 4)] == ["Ada L", "Dora", "Bob", "Bob"]
        wait_until(
            lambda: [_who(b, s) for s in (1, 2, 3, 4)] == ["Ada L", "Dora", "Bob", "Bob"], 3.0
        )
        assert b.index_of("c").faces_per_identity() == {"Ada L": 1, "Dora": 1, "Bob": 2}

        # the last face of an identity leaves with its metadata
        a.move_face("Ada L", ada1.face_id, "Dora", "c")
        assert a.metadata_of(["Ada L"], "c") == {}
        assert a.set_metadata("Ada L", IdentityMeta("x"), "c") is False
    finally:
        a.close()
        b.close()


def test_merge_keeps_the_target_metadata_and_erasure_drops_it(opener: Opener) -> None:
    service = GalleryService.open(opener())
    try:
        service.enroll_many(
            [NewFace("A", _vec(1), collection="c"), NewFace("B", _vec(2), collection="c")]
        )
        service.set_metadata("A", IdentityMeta("a", {"k": 1}), "c")
        service.set_metadata("B", IdentityMeta("b", None), "c")
        service.move_identity("A", "B", "c", "merge")
        assert service.metadata_of(["A", "B"], "c") == {"B": IdentityMeta("b", None)}
        service.set_metadata("B", IdentityMeta(None, None), "c")  # cleared
        assert service.metadata_of(["B"], "c") == {}
        service.set_metadata("B", IdentityMeta(None, {"n": "é"}), "c")
        assert service.metadata_of(["B"], "c") == {"B": IdentityMeta(None, {"n": "é"})}
        service.delete_identity("B", "c")
        service.enroll("B", _vec(3), collection="c")  # a new B has none of the old one's
        assert service.metadata_of(["B"], "c") == {}
    finally:
        service.close()


def test_a_version_4_gallery_is_migrated_to_5_with_its_faces_and_log(opener: Opener) -> None:
    """A gallery as release 4 left it (no metadata, followers, floor or face quality) gets
    them at start, keeping its faces and change log, on both engines."""
    service = GalleryService.open(opener())
    ada = service.enroll("Ada", _vec(1), collection="c")
    store = service.store
    with store._transaction(write=True) as tx:  # back to schema 4, as an old release made it
        for table in ("identity_meta", "followers", "change_floor"):
            tx.run(f"DROP TABLE {table}")
        tx.run("ALTER TABLE faces DROP COLUMN quality")
        tx.run("UPDATE schema_version SET version = 4")
        if store.engine == "sqlite":
            tx.run("PRAGMA user_version=4")
    service.close()

    reopened = GalleryService.open(opener())
    try:
        with reopened.store._transaction(write=False) as tx:
            assert tx.rows("SELECT version FROM schema_version")[0][0] == 5
        assert reopened.index_of("c").identity_of(ada.face_id) == "Ada"
        assert reopened.change_seq == 1 and reopened.store.change_floor() == 0
        assert reopened.set_metadata("Ada", IdentityMeta("x"), "c")
        assert reopened.metadata_of(["Ada"], "c") == {"Ada": IdentityMeta("x")}
        assert reopened.store.face_qualities("c") == {}  # enrolled before quality was kept
    finally:
        reopened.close()
