"""Every route and every error status through the HTTP layer (tiny random model, auth off).

The tiny model cannot tell people apart, so matching is checked with the same photo
(identical embedding, score 1); real recognition is in test_recognition.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faceid_testkit import (
    MULTI_FACE_PHOTO,
    ORL_FACE,
    TINY_DIM,
    assert_error,
    blank_png,
    image_file,
    lfw,
    make_settings,
    pixel_bomb_png,
    running_app,
)
from fastapi.testclient import TestClient

AL_GORE = lfw("Al_Gore", 1)
AGASSI = lfw("Andre_Agassi", 1)


def enroll(client: TestClient, identity: str, path: Path) -> dict:  # type: ignore[type-arg]
    response = client.post(f"/identities/{identity}/faces", files=image_file(path))
    assert response.status_code == 201, response.text
    return response.json()


# --------------------------------------------------------------------------- health
def test_health_reports_model_and_gallery(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["model"] == {
        "name": "tiny",
        "version": "test-1",
        "embedding_dim": TINY_DIM,
        "threshold": 0.5,
        "engine": "tflite-int8",  # no GPU in tests: the CPU default
    }
    assert set(body["gallery"]) == {"identities", "faces", "storage", "change_seq"}
    assert body["gallery"]["storage"] == "sqlite" and body["gallery"]["change_seq"] >= 0


def test_health_is_503_starting_and_other_routes_503_until_ready(client: TestClient) -> None:
    state = client.app.state.faceid  # type: ignore[attr-defined]
    components, state.components = state.components, None
    try:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json() == {"status": "starting"}
        assert_error(client.post("/identify", files=image_file(AL_GORE)), 503, "starting")
        assert_error(client.get("/identities"), 503, "starting")
    finally:
        state.components = components
    assert client.get("/health").status_code == 200


def test_request_id_is_generated_or_echoed(client: TestClient) -> None:
    generated = client.get("/health").headers["x-request-id"]
    assert len(generated) >= 16
    assert client.get("/health").headers["x-request-id"] != generated
    echoed = client.get("/identities", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    bad = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert bad.headers["x-request-id"] != "bad id\twith spaces"


# ------------------------------------------------------------------------- identify
def test_identify_with_empty_gallery_gives_unknown_faces(
    tmp_path: Path, client: TestClient
) -> None:
    # A fresh gallery: use a second app on its own data dir sharing the detector.
    state = client.app.state.faceid  # type: ignore[attr-defined]
    settings = make_settings(state.settings.model_dir, tmp_path)
    with running_app(settings, state.components.recognizer.pipeline) as fresh:
        response = fresh.post("/identify", files=image_file(AL_GORE))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "test-1"
    [face] = body["faces"]
    assert face["identity"] is None and face["score"] is None and face["candidates"] == []
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5
    assert 0.9 <= face["detection_score"] <= 1.0


def test_enroll_then_identify_the_same_photo(client: TestClient) -> None:
    enrolled = enroll(client, "Al Gore", AL_GORE)
    assert enrolled["identity"] == "Al Gore" and enrolled["faces_detected"] >= 1
    response = client.post("/identify", files=image_file(AL_GORE), params={"top_k": 3})
    assert response.status_code == 200, response.text
    face = response.json()["faces"][0]
    assert face["identity"] == "Al Gore"
    assert face["score"] == pytest.approx(1.0, abs=1e-4)
    assert face["candidates"][0] == {"identity": "Al Gore", "score": face["score"]}
    assert len({c["identity"] for c in face["candidates"]}) == len(face["candidates"])
    # The threshold query decides known vs unknown; candidates are listed either way.
    other = image_file(AGASSI)
    loose = client.post("/identify", files=other, params={"threshold": -1.0}).json()["faces"][0]
    strict = client.post("/identify", files=other, params={"threshold": 1.0}).json()["faces"][0]
    assert loose["identity"] == loose["candidates"][0]["identity"] is not None
    assert loose["score"] == strict["score"] < 0.9999
    assert strict["identity"] is None and strict["candidates"] == loose["candidates"]


def test_identify_photo_without_face_is_200_empty(client: TestClient) -> None:
    response = client.post("/identify", files={"image": ("grey.png", blank_png(), "image/png")})
    assert response.status_code == 200, response.text
    assert response.json()["faces"] == []


def test_identify_multi_face_photo_largest_first_and_max_faces(client: TestClient) -> None:
    response = client.post("/identify", files=image_file(MULTI_FACE_PHOTO))
    faces = response.json()["faces"]
    assert len(faces) >= 2
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in faces]
    assert areas == sorted(areas, reverse=True)
    one = client.post("/identify", files=image_file(MULTI_FACE_PHOTO), params={"max_faces": 1})
    assert len(one.json()["faces"]) == 1
    assert one.json()["faces"][0]["box"] == faces[0]["box"]


def test_greyscale_pgm_is_accepted(client: TestClient) -> None:
    response = client.post("/identify", files=image_file(ORL_FACE))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("params", "bad"),
    [({"top_k": 0}, "top_k"), ({"top_k": 101}, "top_k"), ({"threshold": 1.5}, "threshold")],
)
def test_identify_query_validation_is_422(client: TestClient, params: dict, bad: str) -> None:  # type: ignore[type-arg]
    body = assert_error(
        client.post("/identify", files=image_file(AL_GORE), params=params),
        422,
        "validation_error",
    )
    assert bad in body["error"]["message"]


def test_missing_upload_field_is_422(client: TestClient) -> None:
    assert_error(
        client.post("/identify", files={"photo": ("a.jpg", AL_GORE.read_bytes())}),
        422,
        "validation_error",
    )
    assert_error(client.post("/identify"), 422, "validation_error")


# ---------------------------------------------------------------------- bad uploads
def test_truncated_jpeg_is_400_invalid_image(client: TestClient) -> None:
    data = AL_GORE.read_bytes()
    response = client.post("/identify", files={"image": ("cut.jpg", data[: len(data) // 3])})
    assert_error(response, 400, "invalid_image")


def test_text_named_jpg_is_415(client: TestClient) -> None:
    response = client.post(
        "/identify", files={"image": ("notes.jpg", b"just some text, not a photo\n", "image/jpeg")}
    )
    assert_error(response, 415, "unsupported_media_type")


def test_bytes_over_the_cap_are_413(client: TestClient) -> None:
    limit = client.app.state.faceid.settings.max_upload_bytes  # type: ignore[attr-defined]
    assert limit == 10 * 1024 * 1024
    big = b"\xff\xd8\xff\xe0" + b"\0" * limit
    assert_error(client.post("/identify", files={"image": ("big.jpg", big)}), 413, "too_large")
    enroll_big = client.post("/identities/Big/faces", files={"image": ("big.jpg", big)})
    assert_error(enroll_big, 413, "too_large")


def test_bytes_over_the_cap_are_413_while_streaming_without_content_length(
    client: TestClient,
) -> None:
    limit = client.app.state.faceid.settings.max_upload_bytes  # type: ignore[attr-defined]
    boundary = "xyz"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    chunks = [head, b"\xff\xd8\xff"] + [b"\0" * (1 << 20)] * (limit // (1 << 20) + 2)
    response = client.post(
        "/identify",
        content=iter(chunks),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_error(response, 413, "too_large")


def test_pixel_bomb_png_is_413(client: TestClient) -> None:
    bomb = pixel_bomb_png()
    assert len(bomb) < 1000
    assert_error(client.post("/identify", files={"image": ("bomb.png", bomb)}), 413, "too_large")


def test_empty_upload_is_400(client: TestClient) -> None:
    assert_error(client.post("/identify", files={"image": ("e.jpg", b"")}), 400, "invalid_image")


# ------------------------------------------------------------------------ gallery
@pytest.mark.parametrize(
    "name",
    [
        "bad!",
        "x" * 129,
        "<script>",
        " leading",
        "trailing ",
        "...",
        "semi;colon",
        "tab%09name",
    ],
)
def test_bad_identity_names_are_422(client: TestClient, name: str) -> None:
    response = client.post(f"/identities/{name}/faces", files=image_file(AL_GORE))
    assert_error(response, 422, "invalid_identity")
    assert_error(client.get(f"/identities/{name}"), 422, "invalid_identity")


@pytest.mark.parametrize("name", ["José Ñúñez-O'Brien", "王小明", "R2_D2.v3", "x" * 128])
def test_unicode_and_punctuated_names_are_accepted(client: TestClient, name: str) -> None:
    enroll(client, name, AGASSI)
    detail = client.get(f"/identities/{name}")
    assert detail.status_code == 200 and detail.json()["identity"] == name
    assert client.delete(f"/identities/{name}").status_code == 204


def test_enroll_photo_without_face_is_422_no_face(client: TestClient) -> None:
    response = client.post("/identities/Nobody/faces", files={"image": ("g.png", blank_png())})
    assert_error(response, 422, "no_face")
    assert_error(client.get("/identities/Nobody"), 404, "not_found")


def test_list_get_and_delete_identities(client: TestClient) -> None:
    first = enroll(client, "Zed Alpha", AGASSI)
    second = enroll(client, "Zed Alpha", AL_GORE)
    enroll(client, "Zed Beta", AGASSI)

    detail = client.get("/identities/Zed Alpha").json()
    assert detail["identity"] == "Zed Alpha"
    assert [f["face_id"] for f in detail["faces"]] == [first["face_id"], second["face_id"]]
    assert all(f["created_at"] and f["model_version"] == "tiny/test-1" for f in detail["faces"])

    everyone = client.get("/identities", params={"limit": 1000}).json()
    names = [i["identity"] for i in everyone["identities"]]
    assert names == sorted(names) and everyone["total"] == len(names)
    assert {"identity": "Zed Alpha", "faces": 2, "metadata": None} in everyone["identities"]
    pages = [
        client.get("/identities", params={"limit": 1, "offset": o}).json()
        for o in range(everyone["total"])
    ]
    assert [p["identities"][0]["identity"] for p in pages] == names
    assert all(p["total"] == everyone["total"] for p in pages)
    past = client.get("/identities", params={"offset": everyone["total"]}).json()
    assert past["identities"] == [] and past["total"] == everyone["total"]
    assert_error(client.get("/identities", params={"limit": 0}), 422, "validation_error")
    assert_error(client.get("/identities", params={"offset": -1}), 422, "validation_error")

    before = client.get("/health").json()["gallery"]
    gone = client.delete(f"/identities/Zed Alpha/faces/{first['face_id']}")
    assert gone.status_code == 204 and gone.content == b""
    assert_error(client.delete(f"/identities/Zed Alpha/faces/{first['face_id']}"), 404, "not_found")
    assert_error(client.delete(f"/identities/Zed Beta/faces/{second['face_id']}"), 404, "not_found")
    assert client.get("/identities/Zed Alpha").json()["faces"][0]["face_id"] == second["face_id"]
    assert client.delete("/identities/Zed Alpha").status_code == 204
    after = client.get("/health").json()["gallery"]
    assert (after["identities"], after["faces"]) == (before["identities"] - 1, before["faces"] - 2)
    assert_error(client.get("/identities/Zed Alpha"), 404, "not_found")
    assert_error(client.delete("/identities/Zed Alpha"), 404, "not_found")
    assert client.delete("/identities/Zed Beta").status_code == 204


def test_deleted_identity_is_no_longer_identified(client: TestClient) -> None:
    enroll(client, "Temp Person", MULTI_FACE_PHOTO)
    hit = client.post("/identify", files=image_file(MULTI_FACE_PHOTO), params={"top_k": 100})
    assert hit.json()["faces"][0]["identity"] == "Temp Person"
    assert client.delete("/identities/Temp Person").status_code == 204
    miss = client.post("/identify", files=image_file(MULTI_FACE_PHOTO), params={"top_k": 100})
    for face in miss.json()["faces"]:
        assert face["identity"] != "Temp Person"
        assert all(c["identity"] != "Temp Person" for c in face["candidates"])


# ---------------------------------------------------------------------- verify/embed
def test_verify_same_photo_is_same_person(client: TestClient) -> None:
    response = client.post(
        "/verify", files={**image_file(AL_GORE, "image_a"), **image_file(AL_GORE, "image_b")}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["same_person"] is True and body["threshold"] == 0.5
    assert body["score"] == pytest.approx(1.0, abs=1e-4)


def test_verify_errors(client: TestClient) -> None:
    no_face = client.post(
        "/verify",
        files={**image_file(AL_GORE, "image_a"), "image_b": ("g.png", blank_png())},
    )
    body = assert_error(no_face, 422, "no_face")
    assert "image_b" in body["error"]["message"]
    assert_error(
        client.post("/verify", files=image_file(AL_GORE, "image_a")), 422, "validation_error"
    )
    assert_error(
        client.post(
            "/verify", files={**image_file(AL_GORE, "image_a"), "image_b": ("t.jpg", b"text")}
        ),
        415,
        "unsupported_media_type",
    )


def test_embed_returns_unit_embeddings_for_every_face(client: TestClient) -> None:
    response = client.post("/embed", files=image_file(MULTI_FACE_PHOTO))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == "test-1" and len(body["faces"]) >= 2
    for face in body["faces"]:
        vector = np.array(face["embedding"])
        assert vector.shape == (TINY_DIM,)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-4)
        assert {"box", "detection_score", "landmarks"} <= set(face)
    empty = client.post("/embed", files={"image": ("g.png", blank_png())})
    assert empty.status_code == 200 and empty.json()["faces"] == []


# --------------------------------------------------------------------- plumbing
def test_unknown_route_and_wrong_method_use_the_envelope(client: TestClient) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/identify"), 405, "method_not_allowed")
    assert_error(client.put("/identities/Someone"), 405, "method_not_allowed")


def test_unexpected_exception_is_500_envelope_without_traceback(client: TestClient) -> None:
    state = client.app.state.faceid  # type: ignore[attr-defined]
    index = state.components.gallery.index
    original = index.search

    def broken(*_: object) -> None:
        raise RuntimeError("secret internal detail")

    index.search = broken
    try:
        response = client.post("/identify", files=image_file(AL_GORE))
    finally:
        index.search = original
    body = assert_error(response, 500, "internal_error")
    assert "secret" not in response.text
    assert response.headers["x-request-id"] in body["error"]["message"]


def test_metrics_exposes_requests_faces_batches_and_gallery(client: TestClient) -> None:
    client.post("/identify", files=image_file(AL_GORE))
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'faceid_http_requests_total{method="POST",route="/identify",status="200"}' in text
    assert "faceid_http_request_duration_seconds_bucket" in text
    assert 'faceid_faces_per_request_count{route="/identify"}' in text
    assert "faceid_model_batch_size_count" in text
    assert "faceid_model_inference_seconds_count" in text
    assert "faceid_gallery_faces " in text and "faceid_gallery_identities " in text
    assert 'route="unmatched"' not in text or "/nope" not in text


def test_openapi_documents_every_route_with_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [
        ("/health", "get"),
        ("/identify", "post"),
        ("/identities/{identity}/faces", "post"),
        ("/identities", "get"),
        ("/identities/{identity}", "get"),
        ("/identities/{identity}", "delete"),
        ("/identities/{identity}/faces/{face_id}", "delete"),
        ("/verify", "post"),
        ("/embed", "post"),
        ("/metrics", "get"),
    ]:
        assert method in paths[path], (path, method)
    schemas = spec["components"]["schemas"]
    assert "examples" in schemas["IdentifiedFace"]["properties"]["identity"]
    assert "ErrorResponse" in schemas
    assert client.get("/docs").status_code == 200


def test_enroll_location_header_is_percent_encoded(client: TestClient) -> None:
    response = client.post("/identities/Zoë Ünal/faces", files=image_file(AGASSI))
    assert response.status_code == 201
    assert response.headers["location"] == "/identities/Zo%C3%AB%20%C3%9Cnal"
    assert client.get(response.headers["location"]).json()["identity"] == "Zoë Ünal"
    assert client.delete("/identities/Zoë Ünal").status_code == 204


def test_health_stays_fast_while_the_model_is_busy(client: TestClient) -> None:
    import threading
    import time

    batcher = client.app.state.faceid.components.batcher  # type: ignore[attr-defined]
    real = batcher._embed_fn
    started = threading.Event()

    def slow_model(crops: np.ndarray) -> np.ndarray:
        started.set()
        time.sleep(1.5)
        return real(crops)  # type: ignore[no-any-return]

    batcher._embed_fn = slow_model
    try:
        result: dict[str, int] = {}
        worker = threading.Thread(
            target=lambda: result.update(
                status=client.post("/identify", files=image_file(AL_GORE)).status_code
            )
        )
        worker.start()
        assert started.wait(30)
        t0 = time.perf_counter()
        assert client.get("/health").status_code == 200
        assert time.perf_counter() - t0 < 0.5
        worker.join(30)
        assert result["status"] == 200
    finally:
        batcher._embed_fn = real
