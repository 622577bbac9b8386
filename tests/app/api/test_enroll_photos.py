"""Issue 15: several photos in one enrolment request, content hashes, kept crops (tiny model)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from faceid_testkit import assert_error, blank_png, lfw, make_settings, running_app
from fastapi.testclient import TestClient

from app.domain_errors import StartupError
from app.gallery.crops import CropKeyError, CropVault, new_key
from app.state import preflight
from faces import FacePipeline

GOOD = [lfw("Al_Gore", 1), lfw("Al_Gore", 2)]


def _part(name: str, data: bytes) -> tuple[str, tuple[str, bytes, str]]:
    return ("image", (name, data, "application/octet-stream"))


def _rows(data_dir: Path) -> list[tuple[str, str, str | None, bytes | None]]:
    with sqlite3.connect(data_dir / "gallery.sqlite3") as conn:
        return conn.execute(
            "SELECT face_id, identity, content_hash, crop FROM faces ORDER BY rowid"
        ).fetchall()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("enroll-data")


@pytest.fixture(scope="module")
def client(
    tiny_model_dir: Path, face_pipeline: FacePipeline, data_dir: Path
) -> Iterator[TestClient]:
    with running_app(make_settings(tiny_model_dir, data_dir), face_pipeline) as c:
        yield c


def test_several_photos_each_get_their_outcome(client: TestClient, data_dir: Path) -> None:
    files = [
        _part("gore-1.jpg", GOOD[0].read_bytes()),
        _part("blank.png", blank_png()),
        _part("junk.jpg", b"not an image at all"),
        _part("gore-2.jpg", GOOD[1].read_bytes()),
    ]
    response = client.post("/identities/Al Gore/faces", files=files)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["enrolled"] == 2
    photos = body["photos"]
    assert [p["index"] for p in photos] == [0, 1, 2, 3]
    assert [p["filename"] for p in photos] == ["gore-1.jpg", "blank.png", "junk.jpg", "gore-2.jpg"]
    assert [p["enrolled"] for p in photos] == [True, False, False, True]
    assert photos[1]["error"]["code"] == "no_face"
    assert photos[2]["error"]["code"] == "unsupported_media_type"
    assert body["face_id"] == photos[0]["face_id"] != photos[3]["face_id"]
    assert all(0.0 <= p["quality"] <= 1.0 for p in (photos[0], photos[3]))
    faces = client.get("/identities/Al Gore").json()["faces"]
    assert {f["face_id"] for f in faces} == {photos[0]["face_id"], photos[3]["face_id"]}
    # each face keeps the SHA-256 of its photo's bytes; no crop without the setting
    rows = {r[0]: r for r in _rows(data_dir)}
    for i, path in ((0, GOOD[0]), (3, GOOD[1])):
        _, identity, digest, crop = rows[photos[i]["face_id"]]
        assert identity == "Al Gore" and crop is None
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_photo_enrolled_is_422_and_stores_nothing(client: TestClient) -> None:
    files = [_part("a.png", blank_png()), _part("b.jpg", b"junk")]
    body = assert_error(
        client.post("/identities/Nobody/faces", files=files), 422, "no_photo_enrolled"
    )
    message = body["error"]["message"]
    assert "no_face" in message and "unsupported_media_type" in message
    assert client.get("/identities/Nobody").status_code == 404


def test_one_photo_answers_as_before_with_its_outcome(client: TestClient) -> None:
    response = client.post("/identities/Solo/faces", files=[_part("s.jpg", GOOD[0].read_bytes())])
    assert response.status_code == 201
    body = response.json()
    assert body["enrolled"] == 1 and len(body["photos"]) == 1
    assert body["photos"][0]["face_id"] == body["face_id"]
    assert_error(
        client.post("/identities/Solo/faces", files=[_part("b.png", blank_png())]), 422, "no_face"
    )


# ----------------------------------------------------------------- kept crops
def test_kept_crops_are_sealed_open_to_the_enrolled_crop_and_are_erased(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    key = new_key()
    settings = make_settings(tiny_model_dir, tmp_path, keep_aligned_crops=True, crop_key=key)
    with running_app(settings, face_pipeline) as client:
        response = client.post(
            "/identities/Al Gore/faces", files=[_part("g.jpg", GOOD[0].read_bytes())]
        )
        assert response.status_code == 201, response.text
        face_id = response.json()["face_id"]
        [(row_id, _, _, sealed)] = _rows(tmp_path)
        assert row_id == face_id and sealed is not None
        expected = face_pipeline.faces_in_bytes(GOOD[0].read_bytes())[0].crop
        assert expected.tobytes() not in sealed  # encrypted, not stored in clear
        vault = CropVault.from_setting(key)
        assert np.array_equal(vault.open(face_id, sealed), expected)
        with pytest.raises(CropKeyError):  # bound to its face: another id does not open it
            vault.open("another-face", sealed)
        with pytest.raises(CropKeyError):
            CropVault.from_setting(new_key()).open(face_id, sealed)
        assert client.delete("/identities/Al Gore").status_code == 204
        assert _rows(tmp_path) == []  # the crop went with the row


def test_keeping_crops_without_a_key_refuses_to_start(tiny_model_dir: Path, tmp_path: Path) -> None:
    settings = make_settings(tiny_model_dir, tmp_path, keep_aligned_crops=True)
    with pytest.raises(StartupError, match="FACEID_CROP_KEY"):
        preflight(settings)
    bad = make_settings(tiny_model_dir, tmp_path, keep_aligned_crops=True, crop_key="c2hvcnQ=")
    with pytest.raises(StartupError, match="32 bytes"):
        preflight(bad)
