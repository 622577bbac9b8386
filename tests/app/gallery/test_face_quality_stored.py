"""Each face's quality at enrolment is stored (schema 5, ``faces.quality``) on both engines,
kept through corrections, and read per collection for the gallery audit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from app.gallery.audit import audit
from app.gallery.population import Population
from app.gallery.service import GalleryService, NewFace
from app.gallery.storage import GalleryStorage

DIM = 8
Opener = Callable[[], GalleryStorage]


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def test_quality_is_stored_kept_by_corrections_and_read_per_collection(opener: Opener) -> None:
    service = GalleryService.open(opener())
    weak, sharp, _unjudged, elsewhere = service.enroll_many(
        [
            NewFace("ada", _vec(1), collection="c", quality=0.31),
            NewFace("ada", _vec(2), collection="c", quality=0.93),
            NewFace("bob", _vec(3), collection="c"),  # as an imported face: no quality
            NewFace("ada", _vec(4), collection="d", quality=0.12),
        ]
    )
    qualities = service.store.face_qualities("c")
    assert qualities == {weak.face_id: 0.31, sharp.face_id: 0.93}
    assert service.store.face_qualities("d") == {elsewhere.face_id: 0.12}
    # a moved face and a renamed identity keep the quality their faces were enrolled with
    service.move_face("ada", weak.face_id, "bob", "c")
    service.rename_identity("bob", "robert", "c")
    assert service.store.face_qualities("c") == qualities
    # a face enrolled in place of another brings its own quality
    swapped = service.replace_face(
        sharp.face_id, NewFace("ada", _vec(5), collection="c", quality=0.7)
    )
    assert swapped is not None
    assert service.store.face_qualities("c") == {weak.face_id: 0.31, swapped.face_id: 0.7}

    # the audit holds the stored qualities to the bar it is given, weakest first
    report = audit(
        Population.of(*service.index_of("c").snapshot()),
        0.99,
        "centroid",
        quality=service.store.face_qualities("c"),
        enroll_floor=0.75,
    )
    assert [(f.face_id, f.identity, f.quality) for f in report.below_floor or []] == [
        (weak.face_id, "robert", 0.31),
        (swapped.face_id, "ada", 0.7),
    ]
    assert report.notes == [
        "1 of 3 faces have no stored quality (enrolled before schema 5, imported or "
        "re-embedded) and are not judged against the floor."
    ]
    service.close()
