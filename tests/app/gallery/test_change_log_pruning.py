"""The change log is pruned (on both engines): up to what every live follower applied, so
it stays bounded under endless enrol/erase cycles; a follower stopped past the TTL is no
longer waited for and catches up by reloading the whole gallery."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.gallery.service import GalleryService, NewFace
from app.gallery.storage import GalleryStorage

DIM = 8
Opener = Callable[[], GalleryStorage]
NOW = 1_000_000.0


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _view(service: GalleryService) -> dict[str, dict[str, str | None]]:
    return {
        name: {f: service.index_of(name).identity_of(f) for f in service.index_of(name).face_ids()}
        for name in ("default", "c")
    }


def test_a_live_follower_holds_the_log_and_a_stopped_one_resnapshots(opener: Opener) -> None:
    a = GalleryService.open(opener())
    b = GalleryService.open(opener())
    try:
        a.enroll_many([NewFace("Ada", _vec(1)), NewFace("Bob", _vec(2), collection="c")])
        b.sync()
        b.maintain(NOW)  # b reports the seq it applied, then "stops"
        held = b.change_seq
        assert held == 2

        kept = a.enroll("Carl", _vec(3))
        erased = a.enroll("Dora", _vec(4))
        a.delete_face("Dora", erased.face_id)
        a.move_identity("Bob", "Bob B", "c", "rename")
        a.sync()
        a.maintain(NOW + 10)  # b is still live: nothing past its seq goes
        assert a.store.change_floor() == held
        assert a.store.changes_since(0, 100)[0].seq == held + 1

        # b resumes within the TTL: it follows the log, no reload
        b.sync()
        assert b.resnapshots == 0 and _view(b) == _view(a)
        b.maintain(NOW + 20)
        a.move_face("Ada", a.faces_of("Ada")[0].face_id, "Eve")
        a.delete_face("Carl", kept.face_id)
        stopped_at = b.change_seq

        # b stops for longer than the TTL: a prunes everything it has applied
        a.sync()
        a.maintain(NOW + 20 + a.follower_ttl_s + 1)
        assert a.store.change_floor() == a.change_seq > stopped_at
        assert a.store.change_log_size() == 0
        applied = b.sync()
        assert applied == 0 and b.resnapshots == 1
        assert (
            _view(b)
            == _view(a)
            == {
                "default": {a.faces_of("Eve")[0].face_id: "Eve"},
                "c": {a.faces_of("Bob B", "c")[0].face_id: "Bob B"},
            }
        )
        assert b.change_seq == a.change_seq
        # and follows the log again from there
        later = a.enroll("Finn", _vec(6))
        b.sync()
        assert b.resnapshots == 1 and b.index.identity_of(later.face_id) == "Finn"
        # a process that starts after the pruning snapshots at the floor
        fresh = GalleryService.open(opener())
        assert fresh.change_seq == b.change_seq and _view(fresh) == _view(b)
        fresh.close()
    finally:
        a.close()
        b.close()


def test_the_change_log_stays_bounded_under_enrol_erase_cycles(opener: Opener) -> None:
    writer = GalleryService.open(opener())
    follower = GalleryService.open(opener())
    cycles, every = 600, 50
    try:
        writer.enroll("Anchor", _vec(0))
        largest = 0
        now = NOW
        for i in range(cycles):
            face = writer.enroll(f"P{i % 7}", _vec(i + 1))
            writer.delete_face(f"P{i % 7}", face.face_id)
            if i % every == every - 1:
                now += 1.0
                follower.sync()
                follower.maintain(now)
                writer.sync()
                writer.maintain(now)
                largest = max(largest, writer.store.change_log_size())
        assert writer.store.change_floor() >= 2 * cycles - 2 * every
        assert largest <= 2 * every + 1  # not 2 * cycles + 1
        assert follower.resnapshots == 0
        assert (
            _view(follower)
            == _view(writer)
            == {
                "default": {writer.faces_of("Anchor")[0].face_id: "Anchor"},
                "c": {},
            }
        )
    finally:
        writer.close()
        follower.close()
