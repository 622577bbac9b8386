"""Operators fix mistakes through the API (issue 24) with the shipped model and real LFW
faces, on SQLite and PostgreSQL: a person enrolled under two names is merged, a misfiled
face moved, an identity renamed and given metadata; a second service on the same gallery
answers accordingly within the sync bound; face ids, enrolment times and hashes stay.
A chosen face of a group photo is enrolled; bad corrections are refused, changing nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faceid_testkit import (
    MULTI_FACE_PHOTO,
    REAL_MODEL_DIR,
    assert_error,
    image_file,
    lfw,
    make_settings,
    running_app,
)
from fastapi.testclient import TestClient
from pg_testkit import PostgresCluster, wait_until

from faces import FacePipeline

BUSH = [lfw("George_W_Bush", n) for n in (1, 2, 3, 4)]
BLAIR = [lfw("Tony_Blair", n) for n in (1, 2)]
POWELL = lfw("Colin_Powell", 1)


def _enrol(client: TestClient, path: str, photo: Path, **params: Any) -> dict[str, Any]:
    response = client.post(f"{path}/faces", files=image_file(photo), params=params)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _named(client: TestClient, prefix: str, photo: Path, **params: Any) -> list[Any]:
    response = client.post(f"{prefix}/identify", files=image_file(photo), params=params)
    assert response.status_code == 200, response.text
    return [f["identity"] for f in response.json()["faces"]]


def _faces(client: TestClient, path: str) -> dict[str, str]:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return {f["face_id"]: f["created_at"] for f in response.json()["faces"]}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def two_services(
    request: pytest.FixtureRequest, face_pipeline: FacePipeline, tmp_path: Path
) -> Iterator[tuple[TestClient, TestClient]]:
    """Two services on one gallery, as two FACEID_WORKERS or two replicas run."""
    url = None
    if request.param == "postgresql":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        cluster.reset()
        url = cluster.url
    settings = make_settings(REAL_MODEL_DIR, tmp_path, sync_poll_ms=50, database_url=url)
    with running_app(settings, face_pipeline) as one, running_app(settings, face_pipeline) as two:
        yield one, two


def test_merge_move_rename_and_metadata_reach_the_other_service(
    two_services: tuple[TestClient, TestClient],
) -> None:
    one, two = two_services
    pre = "/collections/door"
    ids = f"{pre}/identities"
    first = _enrol(one, f"{ids}/Bush", BUSH[0])
    assert first["warnings"] == []
    _enrol(one, f"{ids}/Bush", BUSH[1])
    _enrol(one, f"{ids}/Blair", BLAIR[0])
    _enrol(one, f"{ids}/Powell", POWELL)
    # the same person under a second name: enrolled, with a warning naming the first
    twice = _enrol(one, f"{ids}/G W Bush", BUSH[2])
    [warning] = twice["warnings"]
    assert warning["code"] == "matches_other_identity" and warning["identity"] == "Bush"
    assert warning["face_id"] == twice["face_id"] and warning["score"] >= warning["threshold"]
    # a photo of Bush filed under Blair (a mistake), also warned about
    misfiled = _enrol(one, f"{ids}/Blair", BUSH[3])
    assert [w["identity"] for w in misfiled["warnings"]] in (["Bush"], ["G W Bush"])
    wait_until(lambda: _named(two, pre, POWELL) == ["Powell"], timeout=5.0)

    # merge the second name into the first: every face keeps its id and time
    bush_before = _faces(one, f"{ids}/Bush") | _faces(one, f"{ids}/G W Bush")
    merged = one.post(f"{ids}/G W Bush/merge", json={"into": "Bush"})
    assert merged.status_code == 200, merged.text
    assert {f["face_id"]: f["created_at"] for f in merged.json()["faces"]} == bush_before
    assert_error(one.get(f"{ids}/G W Bush"), 404, "not_found")
    wait_until(lambda: two.get(f"{ids}/G W Bush").status_code == 404, timeout=5.0)
    wait_until(lambda: _named(two, pre, BUSH[2]) == ["Bush"], timeout=5.0)

    # move the misfiled face from Blair to Bush: Blair keeps only his own
    moved = one.post(f"{ids}/Blair/faces/{misfiled['face_id']}/move", json={"to": "Bush"})
    assert moved.status_code == 200, moved.text
    assert misfiled["face_id"] in {f["face_id"] for f in moved.json()["faces"]}
    assert len(_faces(one, f"{ids}/Blair")) == 1
    wait_until(lambda: _named(two, pre, BUSH[3]) == ["Bush"], timeout=5.0)
    assert _named(two, "", BUSH[3]) == [None]  # the default collection is another gallery

    # metadata, then a rename that carries it; the other service answers with both
    meta = {"external_id": "emp-43", "data": {"team": "texas", "n": 2}}
    put = one.put(f"{ids}/Bush/metadata", json=meta)
    assert put.status_code == 200 and put.json()["metadata"] == meta
    renamed = one.post(f"{ids}/Bush/rename", json={"name": "George W Bush"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["metadata"] == meta
    wait_until(lambda: _named(two, pre, BUSH[0]) == ["George W Bush"], timeout=5.0)
    response = two.post(f"{pre}/identify", files=image_file(BUSH[0]), params={"with_metadata": 1})
    [face] = response.json()["faces"]
    assert face["identity"] == "George W Bush" and face["metadata"] == meta
    listing = two.get(ids).json()["identities"]
    assert {i["identity"]: (i["faces"], i["metadata"]) for i in listing} == {
        "Blair": (1, None),
        "George W Bush": (4, meta),
        "Powell": (1, None),
    }
    assert _faces(two, f"{ids}/George W Bush") == bush_before | {
        misfiled["face_id"]: _faces(one, f"{ids}/George W Bush")[misfiled["face_id"]]
    }


@pytest.fixture(scope="module")
def client(
    face_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    # The group photo's smaller faces are small and soft: no quality floors, so that any
    # of them can be chosen and named.
    settings = make_settings(
        REAL_MODEL_DIR,
        tmp_path_factory.mktemp("data"),
        enroll_quality_floor=0.0,
        probe_quality_floor=0.0,
    )
    with running_app(settings, face_pipeline) as c:
        yield c


def test_a_chosen_face_of_a_group_photo_is_enrolled(client: TestClient) -> None:
    faces = client.post("/identify", files=image_file(MULTI_FACE_PHOTO)).json()["faces"]
    assert len(faces) >= 3
    by_index = _enrol(client, "/identities/Second", MULTI_FACE_PHOTO, face_index=1)
    by_box = _enrol(
        client, "/identities/Third", MULTI_FACE_PHOTO, box=",".join(map(str, faces[2]["box"]))
    )
    assert by_index["face_id"] != by_box["face_id"]
    named = _named(client, "", MULTI_FACE_PHOTO)
    assert named[1:3] == ["Second", "Third"] and named[0] is None
    # the largest stays the default
    largest = _enrol(client, "/identities/First", MULTI_FACE_PHOTO)
    assert _named(client, "", MULTI_FACE_PHOTO)[:3] == ["First", "Second", "Third"]
    assert largest["quality"] == round(faces[0]["quality"], 4)


def test_a_wrong_enrolment_face_is_replaced_in_one_step(client: TestClient) -> None:
    pre = "/collections/fix"  # a gallery of its own: the other tests enrol the same photo
    ids = f"{pre}/identities"
    wrong = _enrol(client, f"{ids}/Meant", MULTI_FACE_PHOTO)  # the largest: not the one
    assert _named(client, pre, MULTI_FACE_PHOTO)[0] == "Meant"
    assert_error(
        client.post(
            f"{ids}/Meant/faces",
            files=image_file(MULTI_FACE_PHOTO),
            params={"face_index": 2, "replaces": "no-such-face"},
        ),
        404,
        "not_found",
    )
    assert list(_faces(client, f"{ids}/Meant")) == [wrong["face_id"]]  # nothing stored
    right = _enrol(
        client, f"{ids}/Meant", MULTI_FACE_PHOTO, face_index=2, replaces=wrong["face_id"]
    )
    assert list(_faces(client, f"{ids}/Meant")) == [right["face_id"]]
    named = _named(client, pre, MULTI_FACE_PHOTO)
    assert named[2] == "Meant" and named[0] != "Meant"


def test_bad_corrections_are_refused_and_change_nothing(client: TestClient) -> None:
    _enrol(client, "/identities/Ann", BUSH[0])
    _enrol(client, "/identities/Ben", BLAIR[0])
    before = client.get("/identities").json()
    ann = next(iter(_faces(client, "/identities/Ann")))
    refusals = [
        (client.post("/identities/Ann/rename", json={"name": "Ben"}), 409, "identity_exists"),
        (client.post("/identities/Ann/rename", json={"name": "Ann"}), 422, "same_identity"),
        (client.post("/identities/Ann/merge", json={"into": "Ann"}), 422, "same_identity"),
        (client.post("/identities/Ann/merge", json={"into": "Nobody"}), 404, "not_found"),
        (client.post("/identities/Nobody/merge", json={"into": "Ann"}), 404, "not_found"),
        (client.post("/identities/Nobody/rename", json={"name": "X"}), 404, "not_found"),
        (client.post("/identities/Ann/rename", json={"name": " "}), 422, "invalid_identity"),
        (client.post("/identities/Ann/rename", json={}), 422, "validation_error"),
        (client.post(f"/identities/Ben/faces/{ann}/move", json={"to": "X"}), 404, "not_found"),
        (
            client.post(f"/identities/Ann/faces/{ann}/move", json={"to": "Ann"}),
            422,
            "same_identity",
        ),
        (client.put("/identities/Nobody/metadata", json={"external_id": "x"}), 404, "not_found"),
        (
            client.put("/identities/Ann/metadata", json={"data": {"x": "y" * 5000}}),
            413,
            "metadata_too_large",
        ),
        (
            client.put("/identities/Ann/metadata", json={"external_id": "e" * 300}),
            413,
            "metadata_too_large",
        ),
        (client.put("/identities/Ann/metadata", json={"data": [1]}), 422, "validation_error"),
        (
            client.put(
                "/identities/Ann/metadata",
                content=b'{"data": {"x": NaN}}',
                headers={"content-type": "application/json"},
            ),
            422,
            "validation_error",
        ),
    ]
    for response, status, code in refusals:
        assert_error(response, status, code)
    enrol = "/identities/Cy/faces"
    photo = image_file(MULTI_FACE_PHOTO)
    for params, code in (
        ({"face_index": 40}, "no_such_face"),
        ({"box": "0,0,5,5"}, "no_such_face"),
        ({"box": "1,2,3"}, "validation_error"),
        ({"box": "5,5,1,1"}, "validation_error"),
        ({"box": "1,1,50,50", "face_index": 0}, "validation_error"),
    ):
        assert_error(client.post(enrol, files=photo, params=params), 422, code)
    two_photos = [
        ("image", ("a.jpg", BUSH[1].read_bytes())),
        ("image", ("b.jpg", BUSH[2].read_bytes())),
    ]
    assert_error(
        client.post(enrol, files=two_photos, params={"face_index": 0}), 422, "validation_error"
    )
    assert_error(
        client.post(enrol, files=two_photos, params={"replaces": "x"}), 422, "validation_error"
    )
    assert client.get("/identities").json() == before
    assert_error(client.get("/identities/Cy"), 404, "not_found")
