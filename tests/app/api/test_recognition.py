"""Real recognition with the shipped model (model_store/faceid/2) through the HTTP API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from faceid_testkit import (
    DATA,
    MULTI_FACE_PHOTO,
    REAL_MODEL_DIR,
    image_file,
    lfw,
    make_settings,
    running_app,
)
from fastapi.testclient import TestClient

from faces import FacePipeline

# LFW people with at least three photos: photo 1 is enrolled, 2 and 3 are queries.
PEOPLE = [
    "Al_Gore",
    "Andre_Agassi",
    "Alejandro_Toledo",
    "Amelia_Vega",
    "Al_Sharpton",
    "Ahmed_Chalabi",
    "Ai_Sugiyama",
    "Ana_Guevara",
]
STRANGERS = ["Adam_Sandler", "Alec_Baldwin", "Abdoulaye_Wade"]  # never enrolled


SHIPPED_VERSION = json.loads((REAL_MODEL_DIR / "model_card.json").read_text())["version"]


def name_of(person: str) -> str:
    return person.replace("_", " ")


@pytest.fixture(scope="module")
def client(
    face_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    # A long batch wait so that faces of concurrent requests reliably meet in one batch
    # (detection is slower than the model on a CPU, so faces otherwise arrive one by one).
    settings = make_settings(REAL_MODEL_DIR, tmp_path_factory.mktemp("data"), batch_max_wait_ms=200)
    with running_app(settings, face_pipeline) as c:
        for person in PEOPLE:
            response = c.post(f"/identities/{name_of(person)}/faces", files=image_file(lfw(person)))
            assert response.status_code == 201, response.text
        yield c


def identify(client: TestClient, path: Path, **params: object) -> dict:  # type: ignore[type-arg]
    response = client.post("/identify", files=image_file(path), params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_health_reports_the_shipped_model(client: TestClient) -> None:
    body = client.get("/health").json()
    card = json.loads((REAL_MODEL_DIR / "model_card.json").read_text())
    assert body["model"]["name"] == card["name"] == "faceid"
    assert body["model"]["version"] == card["version"]
    assert body["model"]["threshold"] == pytest.approx(card["threshold"])
    assert body["model"]["embedding_dim"] == 128
    assert body["model"]["engine"] == "tflite-int8"  # the CPU default, checked and in use
    gallery = body["gallery"]
    assert (gallery["identities"], gallery["faces"]) == (len(PEOPLE), len(PEOPLE))


@pytest.mark.parametrize("person", PEOPLE)
def test_enrolled_person_is_identified_in_a_different_photo(
    client: TestClient, person: str
) -> None:
    body = identify(client, lfw(person, 2), top_k=3)
    assert body["model_version"] == SHIPPED_VERSION
    face = body["faces"][0]
    assert face["identity"] == name_of(person), face
    assert face["score"] >= client.get("/health").json()["model"]["threshold"]
    assert face["candidates"][0]["identity"] == name_of(person)
    assert len(face["candidates"]) == 3


@pytest.mark.parametrize("person", STRANGERS)
def test_unenrolled_person_is_unknown(client: TestClient, person: str) -> None:
    face = identify(client, lfw(person, 1))["faces"][0]
    assert face["identity"] is None
    assert face["score"] < client.get("/health").json()["model"]["threshold"]
    assert face["candidates"] and face["candidates"][0]["score"] == face["score"]


def test_multi_face_photo_gives_several_faces_largest_first(client: TestClient) -> None:
    faces = identify(client, MULTI_FACE_PHOTO)["faces"]
    assert len(faces) >= 2
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert all(f["identity"] is None for f in faces)  # nobody in it is enrolled


def test_verify_same_and_different_people(client: TestClient) -> None:
    def verify(a: Path, b: Path) -> dict:  # type: ignore[type-arg]
        files = {**image_file(a, "image_a"), **image_file(b, "image_b")}
        response = client.post("/verify", files=files)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    same = verify(lfw("Amelia_Vega", 2), lfw("Amelia_Vega", 3))
    assert same["same_person"] is True and same["score"] >= same["threshold"]
    different = verify(lfw("Amelia_Vega", 2), lfw("Al_Gore", 2))
    assert different["same_person"] is False and different["score"] < different["threshold"]


def test_embeddings_of_the_same_person_are_closer(client: TestClient) -> None:
    def vector(path: Path) -> list[float]:
        response = client.post("/embed", files=image_file(path))
        return response.json()["faces"][0]["embedding"]  # type: ignore[no-any-return]

    a1, a2, b = (
        vector(lfw("Ai_Sugiyama", 1)),
        vector(lfw("Ai_Sugiyama", 2)),
        vector(lfw("Al_Gore", 1)),
    )
    dot = lambda u, v: sum(x * y for x, y in zip(u, v, strict=True))  # noqa: E731
    assert len(a1) == 128 and dot(a1, a2) > dot(a1, b) + 0.2


def test_concurrent_identify_requests_are_all_right_and_batched(client: TestClient) -> None:
    def batch_metrics() -> dict[str, float]:
        text = client.get("/metrics").text

        def value(sample: str) -> float:
            match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
            assert match, sample
            return float(match.group(1))

        return {
            "calls": value("faceid_model_batch_size_count"),
            "faces": value("faceid_model_batch_size_sum"),
            "single_face_calls": value('faceid_model_batch_size_bucket{le="1.0"}'),
            "single_request_calls": value('faceid_model_batch_requests_bucket{le="1.0"}'),
        }

    def ask(person: str) -> tuple[str, str | None]:
        face = identify(client, lfw(person, 3))["faces"][0]
        return person, face["identity"]

    before = batch_metrics()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(ask, PEOPLE))
    assert answers == [(p, name_of(p)) for p in PEOPLE]
    after = batch_metrics()
    delta = {k: after[k] - before[k] for k in after}
    assert delta["faces"] >= len(PEOPLE)
    # a model call with more than one face, from more than one request
    assert delta["single_face_calls"] < delta["calls"], delta
    assert delta["single_request_calls"] < delta["calls"], delta


def test_several_photos_per_identity_and_delete_makes_unknown(client: TestClient) -> None:
    extra = client.post("/identities/Al Gore/faces", files=image_file(lfw("Al_Gore", 4)))
    assert extra.status_code == 201
    assert len(client.get("/identities/Al Gore").json()["faces"]) == 2
    assert identify(client, lfw("Al_Gore", 5))["faces"][0]["identity"] == "Al Gore"

    assert client.delete("/identities/Al Gore").status_code == 204
    face = identify(client, lfw("Al_Gore", 2), top_k=100)["faces"][0]
    assert face["identity"] is None
    assert all(c["identity"] != "Al Gore" for c in face["candidates"])
    assert client.get("/identities/Al Gore").status_code == 404


def test_embed_route_matches_the_training_code_path_with_the_shipped_model(
    client: TestClient, face_pipeline: FacePipeline
) -> None:
    """The pipeline's promise end to end. The crop the service makes from an upload is the
    training package's crop (prepare.process_image): the served engine gives /embed's
    answer back to 1e-6 from the training crop. And the served embedding stays within the
    engine's tolerance of the training evaluator's SavedModel embedding."""
    import numpy as np

    from training.evaluate import savedmodel_embed_fn
    from training.prepare import process_image

    model = client.app.state.faceid.components.model  # type: ignore[attr-defined]
    embed = savedmodel_embed_fn(REAL_MODEL_DIR)
    for path in (lfw("Al_Gore", 2), DATA / "orl" / "s7" / "4.pgm"):
        face, status = process_image(face_pipeline, path)
        assert face is not None and status in ("used", "several_faces")
        response = client.post("/embed", files=image_file(path))
        assert response.status_code == 200, response.text
        served = np.asarray(response.json()["faces"][0]["embedding"], dtype=np.float32)
        np.testing.assert_allclose(served, model.embed(face.crop[None])[0], atol=1e-6)
        trained = embed(face.crop[None])[0]
        if model.engine == "tflite-int8":
            assert float(served @ trained) > 0.998
        else:
            np.testing.assert_allclose(served, trained, atol=1e-5)
