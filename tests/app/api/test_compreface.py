"""The CompreFace dialect (``/api/v1``) with the shipped model, through the HTTP layer.

Keys are scoped (``app.keys``): a ``manage`` key of the collection ``front-door`` enrols
and recognises there; a ``recognize`` key of the same collection may only recognise; a
key of ``back-door`` sees none of ``front-door``'s people. Similarities are checked
against the service's own decision (``/collections/{c}/identify``): 0.6 is the bar.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from faceid_testkit import (
    MULTI_FACE_PHOTO,
    REAL_MODEL_DIR,
    blank_png,
    lfw,
    make_settings,
    running_app,
)
from fastapi.testclient import TestClient

from app.gallery.records import utc_now
from app.gallery.storage import KeyRecord
from app.keys import Role, new_key
from faces import FacePipeline

ADMIN = "cf-admin-key"
PEOPLE = ["Al_Gore", "Andre_Agassi", "Amelia_Vega", "Ana_Guevara"]
STRANGERS = ["Adam_Sandler", "Abdoulaye_Wade"]
NO_FACE = {"message": "No face is found in the given image", "code": 28}
CF = "/api/v1"

KeyFor = Callable[[str, Role], dict[str, str]]


def name_of(person: str) -> str:
    return person.replace("_", " ")


def upload(path: Path, field: str = "file") -> dict[str, Any]:
    # as the SDK sends it: a filename, no part content type
    return {field: (path.name, path.read_bytes())}


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def client(
    face_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = make_settings(
        REAL_MODEL_DIR, tmp_path_factory.mktemp("data"), api_keys=ADMIN, max_upload_bytes=MAX
    )
    with running_app(settings, face_pipeline) as c:
        yield c


MAX = 2 * 1024 * 1024


@pytest.fixture(scope="module")
def key_for(client: TestClient) -> KeyFor:
    """``x-api-key`` headers of a key with this role, opening only this collection."""
    gallery = client.app.state.faceid.components.recognizer.gallery  # type: ignore[attr-defined]
    made: dict[tuple[str, Role], dict[str, str]] = {}

    def make(collection: str, role: Role) -> dict[str, str]:
        if (collection, role) not in made:
            key, key_id, secret_hash = new_key()
            gallery.store.add_key(
                KeyRecord(key_id, secret_hash, role.name, (collection,), utc_now(), "test")
            )
            gallery.sync_keys()
            made[collection, role] = {"x-api-key": key}
        return made[collection, role]

    return make


@pytest.fixture(scope="module")
def front(client: TestClient, key_for: KeyFor) -> dict[str, str]:
    """The manage key of ``front-door``, where PEOPLE are enrolled (photo 1 each)."""
    headers = key_for("front-door", Role.manage)
    for person in PEOPLE:
        response = client.post(
            f"{CF}/recognition/faces",
            params={"subject": name_of(person)},
            files=upload(lfw(person, 1)),
            headers=headers,
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert set(body) == {"image_id", "subject"} and body["subject"] == name_of(person)
    return headers


def recognize(client: TestClient, headers: dict[str, str], path: Path, query: str = "") -> Any:
    response = client.post(
        f"{CF}/recognition/recognize{query}", files=upload(path), headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def native_identity(client: TestClient, collection: str, path: Path) -> str | None:
    response = client.post(
        f"/collections/{collection}/identify",
        files={"image": (path.name, path.read_bytes())},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 200, response.text
    identity: str | None = response.json()["faces"][0]["identity"]
    return identity


# --------------------------------------------------------------------- recognize
@pytest.mark.parametrize("person", PEOPLE[:3])
def test_an_enrolled_person_is_recognised_at_or_over_0_6(
    client: TestClient, front: dict[str, str], person: str
) -> None:
    body = recognize(client, front, lfw(person, 2))
    assert set(body) == {"result"}
    [face] = body["result"]
    assert set(face) == {"box", "subjects"}
    assert set(face["box"]) == {"probability", "x_max", "y_max", "x_min", "y_min"}
    assert all(isinstance(face["box"][k], int) for k in ("x_max", "y_max", "x_min", "y_min"))
    assert 0 < face["box"]["probability"] <= 1
    [best] = face["subjects"]
    assert best["subject"] == name_of(person)
    assert best["similarity"] >= 0.6
    assert native_identity(client, "front-door", lfw(person, 2)) == name_of(person)


@pytest.mark.parametrize("stranger", STRANGERS)
def test_a_stranger_is_under_0_6_as_the_service_decides(
    client: TestClient, front: dict[str, str], stranger: str
) -> None:
    [face] = recognize(client, front, lfw(stranger, 1))["result"]
    assert len(face["subjects"]) == 1  # the best subject is still reported, as CompreFace
    assert 0 <= face["subjects"][0]["similarity"] < 0.6
    assert native_identity(client, "front-door", lfw(stranger, 1)) is None


def test_prediction_count_plugins_status_and_a_lenient_query(
    client: TestClient, front: dict[str, str]
) -> None:
    query = (
        "?&limit=0&det_prob_threshold=0.8&prediction_count=3"
        "&face_plugins=landmarks,calculator,age,undefined&status=True"
    )
    body = recognize(client, front, lfw("Al_Gore", 4), query)
    assert set(body) == {"result", "plugins_versions"}
    assert set(body["plugins_versions"]) == {"detector", "calculator"}
    [face] = body["result"]
    assert set(face) == {"box", "subjects", "landmarks", "embedding", "execution_time"}
    assert len(face["subjects"]) == 3
    similarities = [s["similarity"] for s in face["subjects"]]
    assert similarities == sorted(similarities, reverse=True)
    assert len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
    dim = client.app.state.faceid.components.recognizer.policy.card.embedding_dim  # type: ignore[attr-defined]
    assert len(face["embedding"]) == dim
    assert abs(sum(v * v for v in face["embedding"]) - 1.0) < 1e-3
    assert {"detector", "calculator"} <= set(face["execution_time"])
    # Double Take's default query
    assert recognize(client, front, lfw("Al_Gore", 2), "?face_plugins=undefined")["result"]


def test_the_same_person_is_unknown_through_another_collections_key(
    client: TestClient, front: dict[str, str], key_for: KeyFor
) -> None:
    back = key_for("back-door", Role.recognize)
    [face] = recognize(client, back, lfw("Al_Gore", 2))["result"]
    assert face["subjects"] == []


def test_no_face_is_400_code_28_without_result(client: TestClient, front: dict[str, str]) -> None:
    for route in ("/recognition/recognize", "/detection/detect"):
        response = client.post(
            f"{CF}{route}", files={"file": ("blank.png", blank_png())}, headers=front
        )
        assert response.status_code == 400
        assert response.json() == NO_FACE
    add = client.post(
        f"{CF}/recognition/faces?subject=Nobody",
        files={"file": ("blank.png", blank_png())},
        headers=front,
    )
    assert (add.status_code, add.json()) == (400, NO_FACE)


def test_keys_missing_unknown_and_roles(client: TestClient, key_for: KeyFor) -> None:
    photo = upload(lfw("Al_Gore", 2))
    missing = client.post(f"{CF}/recognition/recognize", files=photo)
    assert missing.status_code == 400 and missing.json()["code"] == 20
    assert set(missing.json()) == {"message", "code"}
    unknown = client.post(f"{CF}/recognition/recognize", files=photo, headers={"x-api-key": "nope"})
    assert unknown.status_code == 404 and unknown.json()["code"] == 10
    reader = key_for("front-door", Role.recognize)
    assert client.post(f"{CF}/recognition/recognize", files=photo, headers=reader).is_success
    for method, path in [
        ("POST", "/recognition/faces?subject=Eve"),
        ("GET", "/recognition/faces"),
        ("GET", "/recognition/subjects"),
        ("DELETE", "/recognition/faces?subject=Al Gore"),
        ("DELETE", "/recognition/subjects"),
        ("POST", "/recognition/faces/delete"),
    ]:
        files = photo if method == "POST" and "delete" not in path else None
        response = client.request(method, f"{CF}{path}", files=files, headers=reader)
        assert response.status_code == 403, (method, path, response.text)
        assert set(response.json()) == {"message", "code"}


# ------------------------------------------------------------------------ base64
def test_base64_bodies_add_recognise_and_are_checked(client: TestClient, key_for: KeyFor) -> None:
    headers = key_for("base64", Role.manage)
    added = client.post(
        f"{CF}/recognition/faces?subject=Al Gore",
        json={"file": b64(lfw("Al_Gore", 1))},
        headers=headers,
    )
    assert added.status_code == 201, added.text
    response = client.post(
        f"{CF}/recognition/recognize",
        json={"file": "data:image/jpeg;base64," + b64(lfw("Al_Gore", 2))},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    [face] = response.json()["result"]
    assert face["subjects"][0]["subject"] == "Al Gore"
    assert face["subjects"][0]["similarity"] >= 0.6
    bad = client.post(
        f"{CF}/recognition/recognize", json={"file": "not base64 at all!"}, headers=headers
    )
    assert (bad.status_code, bad.json()) == (
        400,
        {"message": "Provided value is not Base64", "code": 21},
    )
    empty = client.post(f"{CF}/recognition/recognize", json={}, headers=headers)
    assert empty.status_code == 400 and empty.json()["code"] == 5
    # a decoded image one byte over the cap: 413 (the body itself fits the 4/3 body cap)
    over = base64.b64encode(b"\xff" * (MAX + 1)).decode()
    too_big = client.post(f"{CF}/recognition/recognize", json={"file": over}, headers=headers)
    assert too_big.status_code == 413, too_big.text
    # a max-size image, base64-encoded, is not refused for its size
    at_cap = base64.b64encode(b"\xff" * MAX).decode()
    fits = client.post(f"{CF}/recognition/recognize", json={"file": at_cap}, headers=headers)
    assert fits.status_code == 400 and fits.json()["code"] == 21  # not an image, not too big


def test_multipart_over_the_cap_is_413(client: TestClient, front: dict[str, str]) -> None:
    response = client.post(
        f"{CF}/recognition/recognize",
        files={"file": ("big.jpg", b"\xff" * (MAX + 1))},
        headers=front,
    )
    assert response.status_code == 413
    assert set(response.json()) == {"message", "code"}


# --------------------------------------------------------------- faces (examples)
def test_list_examples_pages_and_filters(client: TestClient, front: dict[str, str]) -> None:
    response = client.get(f"{CF}/recognition/faces", headers=front)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["faces", "total_pages", "total_elements", "page_number", "page_size"]
    assert body["total_elements"] == len(PEOPLE) and body["page_size"] == 20
    assert [f["subject"] for f in body["faces"]] == [name_of(p) for p in PEOPLE]
    page = client.get(f"{CF}/recognition/faces?page=1&size=3", headers=front).json()
    assert page["total_pages"] == 2 and page["page_number"] == 1 and len(page["faces"]) == 1
    only = client.get(f"{CF}/recognition/faces?subject=Al Gore", headers=front).json()
    assert [f["subject"] for f in only["faces"]] == ["Al Gore"] and only["total_elements"] == 1


def test_verify_a_photo_against_an_example(client: TestClient, front: dict[str, str]) -> None:
    faces = client.get(f"{CF}/recognition/faces?subject=Al Gore", headers=front).json()["faces"]
    image_id = faces[0]["image_id"]
    same = client.post(
        f"{CF}/recognition/faces/{image_id}/verify?",
        files=upload(lfw("Al_Gore", 2)),
        headers=front,
    )
    assert same.status_code == 200, same.text
    [face] = same.json()["result"]
    assert set(face) == {"box", "subject", "similarity"}
    assert face["subject"] == "Al Gore" and face["similarity"] >= 0.6
    other = client.post(
        f"{CF}/recognition/faces/{image_id}/verify",
        files=upload(lfw("Adam_Sandler", 1)),
        headers=front,
    )
    assert other.json()["result"][0]["similarity"] < 0.6
    missing = client.post(
        f"{CF}/recognition/faces/no-such-image/verify",
        files=upload(lfw("Al_Gore", 2)),
        headers=front,
    )
    assert (missing.status_code, missing.json()["code"]) == (404, 44)


def test_more_than_one_face_cannot_be_an_example(client: TestClient, key_for: KeyFor) -> None:
    headers = key_for("group", Role.manage)
    response = client.post(
        f"{CF}/recognition/faces?subject=Group", files=upload(MULTI_FACE_PHOTO), headers=headers
    )
    assert (response.status_code, response.json()) == (
        400,
        {"message": "More than one face in the source image", "code": 31},
    )
    missing = client.post(f"{CF}/recognition/faces", files=upload(lfw("Al_Gore")), headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (400, 33)
    bad = client.post(
        f"{CF}/recognition/faces?subject=a/b", files=upload(lfw("Al_Gore")), headers=headers
    )
    assert (bad.status_code, bad.json()["code"]) == (400, 36)


def test_delete_examples_one_several_and_by_subject(client: TestClient, key_for: KeyFor) -> None:
    headers = key_for("deletes", Role.manage)
    ids = []
    for person, n in [("Al_Gore", 1), ("Al_Gore", 2), ("Andre_Agassi", 1), ("Amelia_Vega", 1)]:
        response = client.post(
            f"{CF}/recognition/faces?subject={name_of(person)}",
            files=upload(lfw(person, n)),
            headers=headers,
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["image_id"])
    one = client.delete(f"{CF}/recognition/faces/{ids[0]}", headers=headers)
    assert one.json() == {"image_id": ids[0], "subject": "Al Gore"}
    again = client.delete(f"{CF}/recognition/faces/{ids[0]}", headers=headers)
    assert (again.status_code, again.json()["code"]) == (404, 44)
    several = client.post(
        f"{CF}/recognition/faces/delete",
        json=[ids[2], "unknown-id", ids[0], ids[1]],
        headers=headers,
    )
    assert several.status_code == 200
    assert several.json() == [
        {"image_id": ids[2], "subject": "Andre Agassi"},
        {"image_id": ids[1], "subject": "Al Gore"},
    ]
    again = client.post(
        f"{CF}/recognition/faces?subject=Al Gore", files=upload(lfw("Al_Gore", 4)), headers=headers
    )
    assert again.status_code == 201
    by_subject = client.delete(f"{CF}/recognition/faces?subject=Al Gore", headers=headers)
    assert by_subject.json() == {"deleted": 1}
    assert client.delete(f"{CF}/recognition/faces?subject=Nobody", headers=headers).json() == {
        "deleted": 0
    }
    rest = client.get(f"{CF}/recognition/faces", headers=headers).json()
    assert [f["image_id"] for f in rest["faces"]] == [ids[3]]
    assert client.delete(f"{CF}/recognition/faces", headers=headers).json() == {"deleted": 1}
    # erasure is effective: the deleted person is no longer recognised
    [face] = recognize(client, headers, lfw("Amelia_Vega", 2))["result"]
    assert face["subjects"] == []


# ----------------------------------------------------------------------- subjects
def test_subjects_add_list_rename_merge_and_delete(client: TestClient, key_for: KeyFor) -> None:
    headers = key_for("subjects", Role.manage)
    for person, subject in [("Al_Gore", "Al"), ("Al_Gore", "Gore"), ("Andre_Agassi", "Andre")]:
        number = 1 if subject != "Gore" else 4
        response = client.post(
            f"{CF}/recognition/faces?subject={subject}",
            files=upload(lfw(person, number)),
            headers=headers,
        )
        assert response.status_code == 201, response.text
    subjects = f"{CF}/recognition/subjects"
    new = client.post(subjects, json={"subject": "Zoe"}, headers=headers)
    assert (new.status_code, new.json()) == (201, {"subject": "Zoe"})
    exists = client.post(subjects, json={"subject": "Al"}, headers=headers)
    assert (exists.status_code, exists.json()) == (
        400,
        {"message": "Subject already exists", "code": 43},
    )
    assert client.get(subjects, headers=headers).json() == {"subjects": ["Al", "Andre", "Gore"]}
    assert client.get(subjects + "/", headers=headers).json()["subjects"] == ["Al", "Andre", "Gore"]
    # rename into an existing subject merges them (the SDK adds "api_endpoint")
    renamed = client.put(
        f"{subjects}/Al", json={"subject": "Gore", "api_endpoint": "Al"}, headers=headers
    )
    assert renamed.json() == {"updated": True}
    assert client.get(subjects, headers=headers).json() == {"subjects": ["Andre", "Gore"]}
    gore = client.get(f"{CF}/recognition/faces?subject=Gore", headers=headers).json()
    assert gore["total_elements"] == 2
    [face] = recognize(client, headers, lfw("Al_Gore", 2))["result"]
    assert face["subjects"][0]["subject"] == "Gore" and face["subjects"][0]["similarity"] >= 0.6
    assert client.put(f"{subjects}/Gore", json={"subject": "Gore"}, headers=headers).json() == {
        "updated": False
    }
    unknown = client.put(f"{subjects}/Nobody", json={"subject": "X"}, headers=headers)
    assert (unknown.status_code, unknown.json()["code"]) == (404, 42)
    plain = client.put(f"{subjects}/Andre", json={"subject": "Andre Agassi"}, headers=headers)
    assert plain.json() == {"updated": True}
    deleted = client.delete(f"{subjects}/Andre Agassi", headers=headers)
    assert deleted.json() == {"subject": "Andre Agassi"}
    gone = client.delete(f"{subjects}/Andre Agassi", headers=headers)
    assert (gone.status_code, gone.json()["code"]) == (404, 42)
    assert client.delete(subjects, headers=headers).json() == {"deleted": 1}
    assert client.get(subjects, headers=headers).json() == {"subjects": []}


# --------------------------------------------------------- detection, verification
def test_detect(client: TestClient, front: dict[str, str]) -> None:
    response = client.post(
        f"{CF}/detection/detect?&limit=2&status=true&face_plugins=landmarks",
        files=upload(MULTI_FACE_PHOTO),
        headers=front,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["result"]) == 2 and "plugins_versions" in body
    assert all(set(f) == {"box", "landmarks", "execution_time"} for f in body["result"])
    areas = [
        (f["box"]["x_max"] - f["box"]["x_min"]) * (f["box"]["y_max"] - f["box"]["y_min"])
        for f in body["result"]
    ]
    assert areas == sorted(areas, reverse=True)


def test_verification_verify_multipart_and_base64(
    client: TestClient, front: dict[str, str]
) -> None:
    url = f"{CF}/verification/verify"
    same = client.post(
        url,
        files={
            **upload(lfw("Al_Gore", 1), "source_image"),
            **upload(lfw("Al_Gore", 2), "target_image"),
        },
        headers=front,
    )
    assert same.status_code == 200, same.text
    [item] = same.json()["result"]
    assert set(item) == {"source_image_face", "face_matches"}
    assert set(item["source_image_face"]) == {"box"}
    [match] = item["face_matches"]
    assert set(match) == {"box", "similarity"} and match["similarity"] >= 0.6
    other = client.post(
        url + "?status=true",
        json={"source_image": b64(lfw("Al_Gore", 1)), "target_image": b64(lfw("Adam_Sandler", 1))},
        headers=front,
    )
    assert other.status_code == 200, other.text
    [item] = other.json()["result"]
    assert "plugins_versions" in item and item["face_matches"][0]["similarity"] < 0.6
    group = {**upload(MULTI_FACE_PHOTO, "source_image"), **upload(lfw("Al_Gore"), "target_image")}
    refused = client.post(url, files=group, headers=front)
    assert (refused.status_code, refused.json()["code"]) == (400, 31)
    assert client.post(url + "?limit=1", files=group, headers=front).status_code == 200
    missing = client.post(url, files=upload(lfw("Al_Gore"), "source_image"), headers=front)
    assert (missing.status_code, missing.json()["code"]) == (400, 34)


# ------------------------------------------------------------------- Double Take
def double_take(data: dict[str, Any], match: float = 60, unknown: float = 40) -> list[Any]:
    """Double Take's CompreFace ``normalize`` (api/src/util/detectors/compreface.js) with
    its default match 60 % and unknown 40 %: (name, match) per face."""
    if "result" not in data:
        if data.get("code") == 28:
            return []
        raise AssertionError(data.get("message"))
    faces = []
    for obj in data["result"]:
        face = obj["subjects"][0] if obj["subjects"] else None
        confidence = round(face["similarity"] * 100, 2) if face else 0
        name = face["subject"].lower() if face and confidence >= unknown else "unknown"
        faces.append((name, confidence >= match))
    return faces


@pytest.mark.parametrize(
    ("path", "person"),
    [(lfw("Al_Gore", 2), "al gore"), (lfw("Amelia_Vega", 2), "amelia vega")]
    + [(lfw(s, 1), None) for s in STRANGERS],
)
def test_double_take_decides_as_the_service_does(
    client: TestClient, front: dict[str, str], path: Path, person: str | None
) -> None:
    # as Double Take sends it: face_plugins=undefined, a part with its content type
    response = client.post(
        f"{CF}/recognition/recognize?face_plugins=undefined&det_prob_threshold=0.8",
        files={"file": (path.name, path.read_bytes(), "image/jpeg")},
        headers=front,
    )
    [(name, matched)] = double_take(response.json())
    native = native_identity(client, "front-door", path)
    assert matched == (native is not None)
    if person is not None:
        assert (name, matched) == (person, True)
        assert native is not None and native.lower() == person
    blank = client.post(
        f"{CF}/recognition/recognize?face_plugins=undefined&det_prob_threshold=0.8",
        files={"file": ("blank.png", blank_png(), "image/png")},
        headers=front,
    )
    assert double_take(blank.json()) == []


# ------------------------------------------------------------------------ OpenAPI
def test_the_openapi_document_describes_the_dialect() -> None:
    from app.main import create_app
    from app.settings import Settings

    spec = create_app(Settings(api_keys="")).openapi()
    operations = {
        (path, method): op
        for path, item in spec["paths"].items()
        if path.startswith(CF)
        for method, op in item.items()
    }
    assert len(operations) == 14
    for (path, method), op in operations.items():
        assert op["operationId"].startswith("compreface_"), (path, method)
        assert op["tags"] == ["CompreFace dialect"]
        error = op["responses"]["400"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/CompreFaceError"}
    body = operations[(f"{CF}/recognition/recognize", "post")]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
