"""The gallery operations the CompreFace dialect needs, on both engines: find a face by id,
list a collection's faces by page, erase several faces at once, rename (merge) an
identity, and another process following all of it through the change log."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pg_testkit import wait_until

from app.gallery.service import GalleryService, NewFace
from app.gallery.storage import GalleryStorage

DIM = 8
Opener = Callable[[], GalleryStorage]


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _who(service: GalleryService, seed: int, collection: str = "c") -> str | None:
    found = service.index_of(collection).search(_vec(seed)[None], top_k=1)[0]
    return found[0][0] if found else None


def test_rename_merges_keeps_ids_and_reaches_another_process(opener: Opener) -> None:
    a = GalleryService.open(opener())
    b = GalleryService.open(opener())
    b.start_sync(poll_s=0.05)
    try:
        ada, ada2, bob, other = a.enroll_many(
            [
                NewFace("Ada", _vec(1), "h1", collection="c"),
                NewFace("Ada", _vec(2), "h2", collection="c"),
                NewFace("Bob", _vec(3), "h3", collection="c"),
                NewFace("Ada", _vec(4), "h4", collection="elsewhere"),
            ]
        )
        assert a.rename_identity("Ada", "Bob", "c") == 2
        assert a.rename_identity("Nobody", "Bob", "c") == 0
        assert [_who(a, s) for s in (1, 2, 3)] == ["Bob", "Bob", "Bob"]
        assert a.index_of("c").identities == 1
        assert _who(a, 4, "elsewhere") == "Ada"  # another collection's Ada stays
        records = a.faces_of("Bob", "c")
        assert {r.face_id for r in records} == {ada.face_id, ada2.face_id, bob.face_id}
        kept = {r.face_id: (r.created_at, r.content_hash) for r in records}
        assert kept[ada.face_id] == (ada.created_at, "h1")
        wait_until(lambda: _who(b, 1) == "Bob" and b.index_of("c").identities == 1, timeout=3.0)
        assert b.index_of("c").face_ids() == a.index_of("c").face_ids()
        # a process that starts now (snapshot) and one catching up from 0 agree
        fresh = GalleryService.open(opener())
        assert fresh.index_of("c").faces_per_identity() == {"Bob": 3}
        fresh.close()
        assert other.face_id in b.index_of("elsewhere")
    finally:
        a.close()
        b.close()


def test_find_list_and_delete_several(opener: Opener) -> None:
    service = GalleryService.open(opener())
    try:
        faces = service.enroll_many(
            [NewFace(name, _vec(i), collection="c") for i, name in enumerate("ABCAB")]
            + [NewFace("A", _vec(9), collection="d")]
        )
        found = service.find_face(faces[0].face_id, "c")
        assert found is not None and found.identity == "A"
        assert np.allclose(found.embedding, _vec(0))
        assert service.find_face(faces[0].face_id, "d") is None
        page, total = service.list_faces(2, 2, "c")
        assert total == 5 and [r.face_id for r in page] == [f.face_id for f in faces[2:4]]
        only_a, total_a = service.list_faces(10, 0, "c", "A")
        assert total_a == 2 and {r.identity for r in only_a} == {"A"}
        erased = service.delete_faces([faces[0].face_id, faces[5].face_id, "nope"], "c")
        assert [r.face_id for r in erased] == [faces[0].face_id]  # d's face is not c's
        assert faces[0].face_id not in service.index_of("c")
        rest = service.delete_faces(None, "c")
        assert len(rest) == 4 and len(service.index_of("c")) == 0
        assert len(service.index_of("d")) == 1
    finally:
        service.close()
