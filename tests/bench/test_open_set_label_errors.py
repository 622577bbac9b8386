"""bench.open_set's rates without the public data's label errors (training/data_fixes.json)."""

from __future__ import annotations

import pytest

from bench.open_set import without_label_errors

FIXES = {
    "same_person": [["lfw/Joseph_Blatter", "lfw/Sepp_Blatter"]],
    "largest_face_is_someone_else": ["lfw/Laura_Bush/Laura_Bush_0030.jpg"],
}


def _answer(person: str, photo: str, mated: bool, got_person: str | None) -> dict:
    return {
        "mated": mated,
        "person": person,
        "photo": photo,
        "got": None if got_person is None else f"id-{got_person}",
        "got_person": got_person,
    }


def test_aliases_and_photos_of_someone_else_are_not_counted_as_errors() -> None:
    answers = [
        # strangers: one named as his own alias (a label error), one true alarm, two unknown
        _answer("Sepp_Blatter", "Sepp_Blatter/Sepp_Blatter_0001.jpg", False, "Joseph_Blatter"),
        _answer("Tom_Hanks", "Tom_Hanks/Tom_Hanks_0001.jpg", False, "Joseph_Blatter"),
        _answer("Meg_Ryan", "Meg_Ryan/Meg_Ryan_0001.jpg", False, None),
        _answer("Ann_Lee", "Ann_Lee/Ann_Lee_0001.jpg", False, None),
        # a stranger photo whose largest face is George W. Bush: left out
        _answer("Laura_Bush", "Laura_Bush/Laura_Bush_0030.jpg", False, "George_W_Bush"),
        # mated: right, missed, and enrolled under the alias
        _answer("Joseph_Blatter", "Joseph_Blatter/Joseph_Blatter_0002.jpg", True, "Joseph_Blatter"),
        _answer("Colin_Powell", "Colin_Powell/Colin_Powell_0002.jpg", True, None),
        _answer("Joseph_Blatter", "Joseph_Blatter/Joseph_Blatter_0003.jpg", True, "Sepp_Blatter"),
    ]
    out = without_label_errors(answers, FIXES)["label_errors"]
    assert out["photos_left_out"] == 1
    assert out["stranger_alarms_explained"] == 2  # the alias and the photo left out
    assert out["fpir"] == 1 / 4
    assert out["fnir"] == pytest.approx(1 / 3)
