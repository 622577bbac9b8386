"""The DeepStack dialect (``app.api.deepstack``) with the shipped model: DeepStack's bodies,
its errors, its ``api_key`` form field checked before the photo, keys scoped to collections.

The keys: an admin key in the settings (auth on) and database keys of collection
``alpha`` (manage, recognize) and ``beta`` (manage). Raw ASGI calls (``asgi``) check what
the access guard reads of a body before it answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faceid_testkit import (
    REAL_MODEL_DIR,
    blank_png,
    lfw,
    make_settings,
    running_app,
)
from fastapi.testclient import TestClient

from app.gallery.records import utc_now
from app.gallery.storage import KeyRecord
from app.keys import new_key
from faces import FacePipeline

ADMIN = "deepstack-admin-key"
MAX_IMAGES = 3
FACE = "/v1/vision/face"
PERSON = "Al_Gore"
STRANGER = "Adam_Sandler"
DETECT_KEYS = ["confidence", "y_min", "x_min", "y_max", "x_max"]
RECOGNIZE_KEYS = ["confidence", "userid", "y_min", "x_min", "y_max", "x_max"]


def photo(name: str, number: int = 1) -> bytes:
    return lfw(name, number).read_bytes()


def image(data: bytes, field: str = "image") -> dict[str, Any]:
    return {field: ("image", data)}  # as deepstack-python sends it: no part content type


def add_key(client: TestClient, role: str, collection: str) -> str:
    key, key_id, secret_hash = new_key()
    gallery = client.app.state.faceid.components.recognizer.gallery  # type: ignore[attr-defined]
    gallery.store.add_key(KeyRecord(key_id, secret_hash, role, (collection,), utc_now()))
    gallery.sync_keys()
    return key


@pytest.fixture(scope="module")
def service(
    face_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = make_settings(
        REAL_MODEL_DIR,
        tmp_path_factory.mktemp("deepstack"),
        api_keys=ADMIN,
        enroll_max_images=MAX_IMAGES,
        body_idle_timeout_s=1.0,
    )
    with running_app(settings, face_pipeline) as client:
        keys = {
            "alpha": add_key(client, "manage", "alpha"),
            "alpha-recognize": add_key(client, "recognize", "alpha"),
            "beta": add_key(client, "manage", "beta"),
        }
        yield client, keys


@pytest.fixture(scope="module")
def client(service: tuple[TestClient, dict[str, str]]) -> TestClient:
    return service[0]


@pytest.fixture(scope="module")
def keys(service: tuple[TestClient, dict[str, str]]) -> dict[str, str]:
    return service[1]


def post(
    client: TestClient,
    route: str,
    key: str | None,
    files: dict[str, Any] | None = None,
    **fields: Any,
) -> Any:
    """A DeepStack request as deepstack-python makes it: text fields (``api_key`` first)
    then the files."""
    data = {"api_key": key, **fields} if key is not None else fields
    return client.post(FACE + route, data=data, files=files)


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is True and body["duration"] == 0, body
    return body


def refused(response: Any, status: int, error: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert list(body) == ["success", "error", "duration"], body
    assert body["success"] is False and body["duration"] == 0 and body["error"], body
    if error is not None:
        assert body["error"] == error, body
    return body


@pytest.fixture(scope="module")
def enrolled(client: TestClient, keys: dict[str, str]) -> str:
    """Al Gore registered in ``alpha`` (two requests: added, then updated)."""
    first = ok(post(client, "/register", keys["alpha"], image(photo(PERSON, 1)), userid="Al Gore"))
    assert first == {"success": True, "message": "face added", "duration": 0}
    files = {"image1": ("a.jpg", photo(PERSON, 2)), "image2": ("b.jpg", photo(PERSON, 3))}
    again = ok(post(client, "/register", keys["alpha"], files, userid="Al Gore"))
    assert again["message"] == "face updated"
    return "Al Gore"


# ------------------------------------------------------------------ shapes and decisions
def test_register_list_and_recognize(
    client: TestClient, keys: dict[str, str], enrolled: str
) -> None:
    listed = ok(post(client, "/list", keys["alpha"]))
    assert listed == {"success": True, "faces": [enrolled], "duration": 0}
    faces_of = client.app.state.faceid.components.recognizer.gallery.faces_of  # type: ignore[attr-defined]
    assert len(faces_of(enrolled, "alpha")) == 3  # register adds faces, replaces none

    body = ok(post(client, "/recognize", keys["alpha"], image(photo(PERSON, 4))))
    [face] = body["predictions"]
    assert list(face) == RECOGNIZE_KEYS
    assert face["userid"] == enrolled and 0.6 <= face["confidence"] <= 1.0
    assert 0 <= face["x_min"] < face["x_max"] and 0 <= face["y_min"] < face["y_max"]
    assert all(isinstance(face[k], int) for k in RECOGNIZE_KEYS[2:])

    stranger = ok(post(client, "/recognize", keys["alpha"], image(photo(STRANGER))))
    [face] = stranger["predictions"]
    assert face["userid"] == "unknown" and face["confidence"] == 0


def test_min_confidence_can_only_make_recognition_stricter(
    client: TestClient, keys: dict[str, str], enrolled: str
) -> None:
    def recognize(**fields: Any) -> dict[str, Any]:
        body = ok(post(client, "/recognize", keys["alpha"], image(photo(PERSON, 4)), **fields))
        return body["predictions"][0]  # type: ignore[no-any-return]

    named = recognize()
    assert named["userid"] == enrolled
    assert recognize(min_confidence="0.45") == named  # deepstack-python's default
    assert recognize(min_confidence="0") == named
    assert recognize(min_confidence=str(named["confidence"])) == named
    strict = recognize(min_confidence="0.9999")
    assert strict["userid"] == "unknown" and strict["confidence"] == 0
    assert strict["x_min"] == named["x_min"]
    # a stranger stays unknown however low the bar
    [face] = ok(
        post(client, "/recognize", keys["alpha"], image(photo(STRANGER)), min_confidence="0")
    )["predictions"]
    assert face == {**face, "userid": "unknown", "confidence": 0}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("abc", "Invalid value for min_confidence"),
        ("1.5", "min_confidence cannot be greater than 1"),
        ("-0.1", "Invalid value for min_confidence"),
        ("nan", "Invalid value for min_confidence"),
    ],
)
def test_bad_min_confidence_is_400(
    client: TestClient, keys: dict[str, str], value: str, error: str
) -> None:
    response = post(client, "/recognize", keys["alpha"], image(photo(PERSON)), min_confidence=value)
    refused(response, 400, error)


@pytest.mark.parametrize("path", ["", "/"])
def test_detect_on_both_paths(client: TestClient, keys: dict[str, str], path: str) -> None:
    body = ok(post(client, path, keys["alpha-recognize"], image(photo(PERSON))))
    [face] = body["predictions"]
    assert list(face) == DETECT_KEYS and 0.55 <= face["confidence"] <= 1.0
    none = ok(post(client, path, keys["alpha"], image(blank_png())))
    assert none == {"success": True, "predictions": [], "duration": 0}
    # min_confidence is the detection threshold here
    strict = ok(post(client, path, keys["alpha"], image(photo(PERSON)), min_confidence="1"))
    assert strict["predictions"] == [] or strict["predictions"][0]["confidence"] == 1.0


def test_recognize_a_photo_without_face_is_empty(client: TestClient, keys: dict[str, str]) -> None:
    body = ok(post(client, "/recognize", keys["alpha"], image(blank_png())))
    assert body == {"success": True, "predictions": [], "duration": 0}


def test_errors_in_deepstack_shape(client: TestClient, keys: dict[str, str]) -> None:
    key = keys["alpha"]
    refused(
        post(client, "/register", key, image(blank_png()), userid="Nobody"), 400, "no face detected"
    )
    refused(post(client, "/register", key, image(photo(PERSON))), 400, "userid not specified")
    refused(
        post(client, "/register", key, image(photo(PERSON)), userid=""), 400, "userid not specified"
    )
    refused(post(client, "/register", key, userid="Someone"), 400, "No valid image file found")
    refused(post(client, "/register", key, image(photo(PERSON)), userid="bad!name"), 400)
    refused(post(client, "/register", key, image(photo(PERSON)), userid="Unknown"), 400)
    refused(post(client, "/recognize", key), 400, "No valid image file found")
    refused(post(client, "", key, image(b"not an image")), 400)
    refused(post(client, "/delete", key), 400, "userid not specified")
    assert ok(post(client, "/list", key))["faces"] in ([], ["Al Gore"])  # nothing was added
    # a wrong method is DeepStack-shaped too
    refused(client.get(FACE + "/list", headers={"x-api-key": key}), 405)


def test_register_takes_up_to_the_maximum_of_files_under_any_names(
    client: TestClient, keys: dict[str, str]
) -> None:
    files = {f"image{i}": (f"{i}.jpg", photo("Andre_Agassi", i)) for i in range(1, MAX_IMAGES + 1)}
    ok(post(client, "/register", keys["beta"], files, userid="Andre Agassi"))
    faces_of = client.app.state.faceid.components.recognizer.gallery.faces_of  # type: ignore[attr-defined]
    assert len(faces_of("Andre Agassi", "beta")) == MAX_IMAGES
    more = {**files, "image9": ("9.jpg", photo("Andre_Agassi", 4))}
    body = refused(post(client, "/register", keys["beta"], more, userid="Someone Else"), 400)
    assert body["error"].startswith(f"More than {MAX_IMAGES} files")
    same_field = [("image", (f"{i}.jpg", photo("Andre_Agassi", 1))) for i in range(MAX_IMAGES + 1)]
    response = client.post(
        FACE + "/register",
        data={"api_key": keys["beta"], "userid": "Someone Else"},
        files=same_field,
    )
    refused(response, 400)
    assert not faces_of("Someone Else", "beta")
    ok(post(client, "/delete", keys["beta"], userid="Andre Agassi"))


def test_delete(client: TestClient, keys: dict[str, str]) -> None:
    key = keys["beta"]
    ok(post(client, "/register", key, image(photo("Amelia_Vega")), userid="Amelia Vega"))
    assert "Amelia Vega" in ok(post(client, "/list", key))["faces"]
    assert ok(post(client, "/delete", key, userid="Amelia Vega")) == {
        "success": True,
        "duration": 0,
    }
    assert "Amelia Vega" not in ok(post(client, "/list", key))["faces"]
    ok(post(client, "/delete", key, userid="Amelia Vega"))  # unknown: still a success
    ok(post(client, "/delete", key, userid="bad!name"))  # no such name can exist


def test_match(client: TestClient, keys: dict[str, str]) -> None:
    key = keys["alpha-recognize"]
    same = {"image1": ("1.jpg", photo(PERSON, 1)), "image2": ("2.jpg", photo(PERSON, 2))}
    body = ok(post(client, "/match", key, same))
    assert list(body) == ["success", "similarity", "duration"] and body["similarity"] >= 0.6
    other = {"image1": ("1.jpg", photo(PERSON, 1)), "image2": ("2.jpg", photo(STRANGER, 1))}
    assert 0 <= ok(post(client, "/match", key, other))["similarity"] < 0.6
    one = {"image1": ("1.jpg", photo(PERSON, 1))}
    refused(post(client, "/match", key, one), 400, "expected two image files, only one found")
    three = {**same, "image3": ("3.jpg", photo(PERSON, 3))}
    refused(post(client, "/match", key, three), 400, "only two images allowed")
    refused(post(client, "/match", key), 400, "No valid image file found")
    blank = {"image1": ("1.jpg", photo(PERSON, 1)), "image2": ("2.png", blank_png())}
    refused(post(client, "/match", key, blank), 400, "no face detected")


# ------------------------------------------------------------------ keys and collections
def test_the_key_may_come_as_a_header(
    client: TestClient, keys: dict[str, str], enrolled: str
) -> None:
    for headers in ({"Authorization": f"Bearer {keys['alpha']}"}, {"x-api-key": keys["alpha"]}):
        response = client.post(FACE + "/list", headers=headers)
        assert ok(response)["faces"] == [enrolled]
    # the admin key of the settings: the default collection
    assert ok(post(client, "/list", ADMIN))["faces"] == []


@pytest.mark.parametrize("route", ["", "/recognize", "/register", "/list", "/delete", "/match"])
@pytest.mark.parametrize("key", [None, "", "wrong", "fid_0123456789abcdef_" + "x" * 43])
def test_missing_or_wrong_key_is_401(client: TestClient, route: str, key: str | None) -> None:
    files = image(photo(PERSON)) if route not in {"/list", "/delete"} else None
    response = post(client, route, key, files, userid="Al Gore")
    body = refused(response, 401, "Incorrect api key")
    assert body == {"success": False, "error": "Incorrect api key", "duration": 0}


def test_url_encoded_list_with_the_key(
    client: TestClient, keys: dict[str, str], enrolled: str
) -> None:
    body = f"api_key={keys['alpha']}"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert ok(client.post(FACE + "/list", content=body, headers=headers))["faces"] == [enrolled]
    wrong = client.post(FACE + "/list", content="api_key=nope", headers=headers)
    refused(wrong, 401, "Incorrect api key")


@pytest.mark.parametrize("route", ["/register", "/list", "/delete"])
def test_a_recognize_key_cannot_manage(
    client: TestClient, keys: dict[str, str], route: str
) -> None:
    files = image(photo(PERSON)) if route == "/register" else None
    response = post(client, route, keys["alpha-recognize"], files, userid="Al Gore")
    refused(response, 403)


def test_collections_are_apart(client: TestClient, keys: dict[str, str], enrolled: str) -> None:
    assert enrolled not in ok(post(client, "/list", keys["beta"]))["faces"]
    [face] = ok(post(client, "/recognize", keys["beta"], image(photo(PERSON, 4))))["predictions"]
    assert face["userid"] == "unknown" and face["confidence"] == 0
    ok(post(client, "/delete", keys["beta"], userid=enrolled))  # beta cannot erase alpha's
    assert ok(post(client, "/list", keys["alpha"]))["faces"] == [enrolled]
    # the recognize key of alpha sees alpha's people
    [face] = ok(post(client, "/recognize", keys["alpha-recognize"], image(photo(PERSON, 4))))[
        "predictions"
    ]
    assert face["userid"] == enrolled


# ------------------------------------------------------------------ the key before the photo
BOUNDARY = "deepstackboundary"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"


END = f"--{BOUNDARY}--\r\n".encode()


def asgi(
    client: TestClient, path: str, chunks: list[bytes], stall_after: int | None = None
) -> tuple[int, dict[str, Any], int]:
    """POST ``chunks`` straight to the app (after ``stall_after`` chunks the body stalls):
    the status, the JSON body and how many chunks the app asked for."""
    asked = 0

    async def run() -> tuple[int, bytes]:
        nonlocal asked
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if stall_after is not None and asked >= stall_after:
                await asyncio.sleep(3600)
            if asked >= len(chunks):
                await asyncio.sleep(3600)  # waiting for a disconnect
            asked += 1
            return {
                "type": "http.request",
                "body": chunks[asked - 1],
                "more_body": asked < len(chunks),
            }

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        length = sum(map(len, chunks))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
                (b"content-length", str(length).encode()),
            ],
            "client": ("127.0.0.1", 1234),
            "server": ("testserver", 80),
            "state": {},
        }
        await asyncio.wait_for(client.app(scope, receive, send), timeout=60)  # type: ignore[arg-type]
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return int(start["status"]), body

    status, body = client.portal.call(run)  # type: ignore[union-attr]
    return status, json.loads(body), asked


def test_a_file_before_the_key_is_refused_unread(client: TestClient, keys: dict[str, str]) -> None:
    data = photo(PERSON)
    head = part("image", data[:1000], "image")[: -len(b"\r\n")]
    chunks = [head, data[1000:] + b"\r\n" + part("api_key", keys["alpha"].encode()) + END]
    status, body, asked = asgi(client, FACE + "/recognize", chunks)
    assert status == 401 and body["error"] == "Incorrect api key"
    assert asked == 1  # the rest of the photo (and the key after it) was never read


def test_a_long_preamble_without_key_is_refused_unread(client: TestClient) -> None:
    filler = part("padding", b"x" * 100_000)
    chunks = [filler[i : i + 16_384] for i in range(0, len(filler), 16_384)]
    chunks += [part("image", photo(PERSON), "image") + END]
    status, body, asked = asgi(client, FACE + "/recognize", chunks)
    assert status == 401 and body["error"] == "Incorrect api key"
    assert asked <= 5  # 64 KiB at most, not the whole body


def test_the_key_then_the_photo_in_pieces_reaches_the_route_intact(
    client: TestClient, keys: dict[str, str], enrolled: str
) -> None:
    body = (
        part("api_key", keys["alpha"].encode())
        + part("min_confidence", b"0.45")
        + part("image", photo(PERSON, 4), "image")
        + END
    )
    chunks = [body[i : i + 7_000] for i in range(0, len(body), 7_000)]
    status, answer, asked = asgi(client, FACE + "/recognize", chunks)
    assert status == 200, answer
    assert answer["predictions"][0]["userid"] == enrolled
    assert asked == len(chunks)


def test_a_body_stalled_after_the_key_is_408(client: TestClient, keys: dict[str, str]) -> None:
    data = photo(PERSON)
    body = part("api_key", keys["alpha"].encode()) + part("image", data, "image") + END
    chunks = [body[:2000], body[2000:]]
    status, answer, _ = asgi(client, FACE + "/recognize", chunks, stall_after=1)
    assert status == 408 and answer["success"] is False


def test_a_body_stalled_before_the_key_is_408(client: TestClient) -> None:
    chunks = [part("min_confidence", b"0.5")[:10], b"rest"]
    status, answer, asked = asgi(client, FACE + "/recognize", chunks, stall_after=1)
    assert status == 408 and answer["success"] is False and asked == 1


# ------------------------------------------------------------------ auth off
def test_without_keys_an_empty_api_key_works(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    with running_app(make_settings(tiny_model_dir, tmp_path), face_pipeline) as open_client:
        registered = post(open_client, "/register", "", image(photo(PERSON)), userid="Al Gore")
        assert ok(registered)["message"] == "face added"
        assert ok(post(open_client, "/list", ""))["faces"] == ["Al Gore"]
        assert ok(post(open_client, "/list", "anything"))["faces"] == ["Al Gore"]
        listed = open_client.post(
            FACE + "/list",
            content="api_key=",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert ok(listed)["faces"] == ["Al Gore"]
        [face] = ok(post(open_client, "/recognize", "", image(photo(PERSON))))["predictions"]
        assert face["userid"] == "Al Gore"  # the same photo: the same embedding


# ------------------------------------------------------------------ the document
def test_the_document_states_deepstack_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json", headers={"x-api-key": ADMIN}).json()
    operations = {
        (path, method): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if path.startswith(FACE)
    }
    assert {path for path, _ in operations} == {
        FACE, *(FACE + r for r in ("/recognize", "/register", "/list", "/delete", "/match"))
    }  # fmt: skip
    for (_, method), op in operations.items():
        assert method == "post" and op["tags"] == ["DeepStack dialect"]
        assert op["operationId"].startswith("deepstack_")
        for status in ("400", "401", "403", "500", "503"):
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/DeepStackError"}
    assert spec["components"]["schemas"]["DeepStackError"]["properties"]["success"]


def test_a_body_over_the_cap_is_refused_in_deepstack_shape(
    client: TestClient, keys: dict[str, str]
) -> None:
    limit = client.app.state.faceid.settings.max_upload_bytes  # type: ignore[attr-defined]
    big = b"\xff\xd8" + b"\0" * (2 * limit)
    response = post(client, "/recognize", keys["alpha"], image(big))
    refused(response, 413)


def test_register_of_the_most_photos_at_the_cap_fits_and_stays_in_memory(
    client: TestClient, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FACEID_ENROLL_MAX_IMAGES photos of FACEID_MAX_UPLOAD_BYTES each, under distinct
    names, fit the body cap, and no upload is spooled to disk."""
    import tempfile

    rolled: list[int] = []
    original = tempfile.SpooledTemporaryFile.rollover

    def rollover(self: Any) -> None:
        rolled.append(1)
        original(self)

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", rollover)
    limit = client.app.state.faceid.settings.max_upload_bytes  # type: ignore[attr-defined]
    files = {}
    for i in range(1, MAX_IMAGES + 1):
        data = photo("Ai_Sugiyama", i)
        files[f"image{i}"] = (f"{i}.jpg", data + b"\0" * (limit - len(data)))  # after EOI
    assert all(len(data) == limit for _, data in files.values())
    ok(post(client, "/register", keys["beta"], files, userid="Ai Sugiyama"))
    assert rolled == []
    ok(post(client, "/delete", keys["beta"], userid="Ai Sugiyama"))
