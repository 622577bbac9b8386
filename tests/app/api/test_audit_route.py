"""GET /gallery/audit and the calibration check in /health and /metrics, on the tiny model
with synthetic embeddings put straight into the gallery (what is under test is the route,
its keys and the background check, not recognition: ``tests/app/gallery`` has the audit
on real LFW faces). The threshold is fixed (FACEID_THRESHOLD=0.9) and the target FPIR is
5 % (the check needs 39 identities)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faceid_testkit import TINY_DIM, make_settings, running_app
from fastapi.testclient import TestClient

from app.calibration_monitor import CalibrationMonitor
from app.gallery.records import utc_now
from app.gallery.search.index import GalleryIndex
from app.gallery.service import NewFace
from app.gallery.storage import DEFAULT_COLLECTION, CollectionSize, KeyRecord
from app.inference.model import load_card
from app.keys import Role, new_key
from app.recognition import MatchPolicy
from faces import FacePipeline
from faces.model_contract import Calibration

ADMIN = "admin-key-0123456789"


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def client(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = make_settings(
        tiny_model_dir,
        tmp_path_factory.mktemp("data"),
        api_keys=ADMIN,
        threshold=0.9,
        target_fpir=0.05,
        calibration_check_interval_s=1.0,
        sync_poll_ms=50,
    )
    with running_app(settings, face_pipeline) as c:
        yield c


def _components(client: TestClient) -> Any:
    return client.app.state.faceid.components  # type: ignore[attr-defined]


def _key(client: TestClient, role: Role, *collections: str) -> str:
    key, key_id, secret_hash = new_key()
    store = _components(client).gallery.store
    store.add_key(KeyRecord(key_id, secret_hash, role.name, tuple(collections), utc_now()))
    _until(lambda: client.get("/collections", headers=_h(key)).status_code == 200)
    return key


def _until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)
    return found


def _enrol(client: TestClient, people: dict[str, np.ndarray], collection: str) -> list[str]:
    faces = [
        NewFace(name, vector, collection=collection)
        for name, vectors in people.items()
        for vector in vectors
    ]
    return [e.face_id for e in _components(client).gallery.enroll_many(faces)]


def _wipe(client: TestClient, collection: str) -> None:
    _components(client).gallery.delete_faces(None, collection)


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, TINY_DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_the_audit_needs_a_manage_key_for_its_collection(client: TestClient) -> None:
    assert client.get("/gallery/audit").status_code == 401
    recognize = _key(client, Role.recognize, "mine")
    manage = _key(client, Role.manage, "mine")
    response = client.get("/collections/mine/gallery/audit", headers=_h(recognize))
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert client.get("/collections/mine/gallery/audit", headers=_h(manage)).status_code == 200
    other = client.get("/collections/theirs/gallery/audit", headers=_h(manage))
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    assert client.get("/gallery/audit", headers=_h(manage)).status_code == 404  # default
    assert client.get("/gallery/audit", headers=_h(ADMIN)).status_code == 200
    bad = client.get("/gallery/audit?threshold=2", headers=_h(ADMIN))
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"


def test_the_audit_names_a_planted_duplicate_and_a_misfiled_face(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(TINY_DIM)[:6]  # six people far apart (cosine 0)
    people = {f"p{i}": centres[i] + 0.05 * rng.normal(size=(3, TINY_DIM)) for i in range(6)}
    people["p0 again"] = centres[0] + 0.05 * rng.normal(size=(2, TINY_DIM))
    people["p1"] = np.vstack([people["p1"], centres[2] + 0.05 * rng.normal(size=TINY_DIM)])
    ids = _enrol(client, people, "audit")
    body = client.get("/collections/audit/gallery/audit", headers=_h(ADMIN)).json()
    assert body["collection"] == "audit" and body["identities"] == 7 and body["faces"] == 21
    assert body["identification"]["value"] == 0.9
    [dup] = body["duplicates"]
    assert {dup["identity"], dup["other"]} == {"p0", "p0 again"}
    assert (dup["action"], dup["merge_from"], dup["merge_into"]) == ("merge", "p0 again", "p0")
    named = {f["face_id"] for f in dup["faces"] + dup["other_faces"]}
    assert named == set(ids[:3]) | set(ids[-2:])  # p0's three faces and the two planted
    [moved] = body["misfiled"]
    assert moved["face_id"] == ids[6]  # p1's fourth face, enrolled fourth after p0's three
    assert (moved["identity"], moved["move_to"], moved["action"]) == ("p1", "p2", "move")
    assert moved["own_score"] < 0.9 <= moved["other_score"]
    # faces stored without a quality (as imported ones are) are counted, not judged
    assert body["below_floor"] == [] and body["enroll_floor"] == 0.5
    assert any("21 of 21 faces have no stored quality" in note for note in body["notes"])
    # a stricter threshold than every cross score: nothing left
    strict = client.get("/collections/audit/gallery/audit?threshold=0.999", headers=_h(ADMIN))
    assert strict.json()["duplicates"] == [] and strict.json()["misfiled"] == []
    _wipe(client, "audit")


def _population(client: TestClient) -> dict[str, Any]:
    found = client.get("/health").json()["population"]
    assert found is not None
    return dict(found)


def test_health_and_metrics_report_the_check_and_a_heavy_tail_is_logged(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    _until(lambda: client.get("/health").json()["population"])
    assert _population(client)["status"] == "too_few_identities"
    rng = np.random.default_rng(1)
    # 60 people at random in 32 dimensions: no two reach cosine 0.9
    _enrol(client, {f"r{i}": _unit(rng, 1) for i in range(60)}, DEFAULT_COLLECTION)
    found = _until(lambda: (p := _population(client))["identities"] == 60 and p)
    assert found["status"] == "ok" and found["fpir"] == 0.0 and found["fpir_high"] < 0.1
    assert found["threshold"] == 0.9 and found["calibration"] == "card"
    _wipe(client, DEFAULT_COLLECTION)
    # 61 people who all look alike (one shared direction): every stranger is named
    shared = _unit(rng, 1)[0]
    alike = {f"a{i}": (shared + 0.05 * _unit(rng, 1)) for i in range(61)}
    with caplog.at_level(logging.WARNING, logger="faceid.calibration"):
        _enrol(client, alike, DEFAULT_COLLECTION)
        found = _until(lambda: (p := _population(client))["identities"] == 61 and p)
    assert found["status"] == "heavier_than_card"
    assert found["fpir"] > 0.9 and found["fpir_low"] > 2 * 0.05
    assert any("heavier than the model card" in r.getMessage() for r in caplog.records)
    metrics = client.get("/metrics").text
    assert 'faceid_population_check_status{status="heavier_than_card"} 1.0' in metrics
    assert 'faceid_population_check_status{status="ok"} 0.0' in metrics
    assert "faceid_target_fpir 0.05" in metrics
    _wipe(client, DEFAULT_COLLECTION)


class _Gallery:
    """What the monitor reads of a GalleryService: one collection's index and sizes."""

    def __init__(self, index: GalleryIndex) -> None:
        self.index, self.change_seq = index, 1

    def index_of(self, collection: str) -> GalleryIndex:
        return self.index

    def collection_sizes(self) -> list[CollectionSize]:
        return [CollectionSize(DEFAULT_COLLECTION, self.index.identities, len(self.index))]


def test_deployment_calibration_sets_the_threshold_once_there_are_enough_people(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from faceid_testkit import REAL_MODEL_DIR

    card = load_card(REAL_MODEL_DIR)
    settings = make_settings(REAL_MODEL_DIR, tmp_path, calibration="deployment")
    policy = MatchPolicy(card, settings)  # target 1 %: 193 people and 1,000 faces
    index = GalleryIndex(card.embedding_dim)
    monitor = CalibrationMonitor(_Gallery(index), policy, 1.0, deployment=True)  # type: ignore[arg-type]
    rng = np.random.default_rng(2)
    shared = rng.normal(size=card.embedding_dim)
    centres = rng.normal(size=(200, card.embedding_dim)) + 1.5 * shared
    small = np.repeat(centres[:100], 5, axis=0) + 0.3 * rng.normal(size=(500, card.embedding_dim))
    index.add_many([f"s{i}" for i in range(500)], [f"p{i // 5}" for i in range(500)], small)
    monitor.refresh()
    assert policy.threshold(100, 500).source == "calibrated"  # too few: the card's
    more = np.repeat(centres[100:], 5, axis=0) + 0.3 * rng.normal(size=(500, card.embedding_dim))
    index.add_many([f"m{i}" for i in range(500)], [f"q{i // 5}" for i in range(500)], more)
    result = monitor.refresh()
    assert result.check.status == "heavier_than_card"  # people far more alike than the card's
    own = policy.threshold(200, 1000)
    assert own.source == "deployment" and isinstance(monitor.calibration("default"), Calibration)
    assert own.value > policy.card_threshold(200, 1000).value
