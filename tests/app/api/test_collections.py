"""Collections and keys scoped to them (issue 23): one service, many galleries, each with
its own people and calibrated threshold; keys that open some of them with a role.

Runs the shipped model (recognition across collections is the point) on one app; keys are
made with ``python -m app.keys`` where the command itself is under test, else through the
storage, as the command does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faceid_testkit import REAL_MODEL_DIR, image_file, lfw, make_settings, running_app
from fastapi.testclient import TestClient

from app.gallery.records import utc_now
from app.gallery.storage import KeyRecord
from app.keys import ALL_COLLECTIONS, Role, new_key
from faces import FacePipeline

ADMIN = "admin-key-0123456789"
BUSH, BUSH_PROBE = lfw("George_W_Bush", 1), lfw("George_W_Bush", 3)
REPO = Path(__file__).resolve().parents[3]


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def client(
    face_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("data")
    settings = make_settings(REAL_MODEL_DIR, data, api_keys=ADMIN, sync_poll_ms=50)
    with running_app(settings, face_pipeline) as c:
        yield c


def _key(client: TestClient, role: Role, *collections: str) -> str:
    """A key made as ``python -m app.keys create`` makes it, and waited for (the gallery
    follower loads it)."""
    key, key_id, secret_hash = new_key()
    scope = (ALL_COLLECTIONS,) if role is Role.admin else collections
    store = client.app.state.faceid.components.gallery.store  # type: ignore[attr-defined]
    store.add_key(KeyRecord(key_id, secret_hash, role.name, tuple(scope), utc_now()))
    _until(lambda: client.get("/collections", headers=_headers(key)).status_code == 200)
    return key


def _until(check: Any, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _enrol(client: TestClient, key: str, collection: str, who: str, photo: Path) -> None:
    response = client.post(
        f"/collections/{collection}/identities/{who}/faces",
        files=image_file(photo),
        headers=_headers(key),
    )
    assert response.status_code == 201, response.text


def _who(client: TestClient, key: str, path: str, photo: Path) -> dict[str, Any]:
    response = client.post(path, files=image_file(photo), headers=_headers(key))
    assert response.status_code == 200, response.text
    [face] = response.json()["faces"]
    return dict(face)


def test_the_same_person_enrolled_in_a_is_unknown_in_b(client: TestClient) -> None:
    _enrol(client, ADMIN, "alpha", "George_W_Bush", BUSH)
    in_a = _who(client, ADMIN, "/collections/alpha/identify", BUSH_PROBE)
    assert in_a["identity"] == "George_W_Bush"
    in_b = _who(client, ADMIN, "/collections/beta/identify", BUSH_PROBE)
    assert in_b["identity"] is None and in_b["reason"] == "empty_gallery"
    in_default = _who(client, ADMIN, "/identify", BUSH_PROBE)
    assert in_default["identity"] is None
    # the collection's routes mirror today's: listing, details, erasure
    listed = client.get("/collections/alpha/identities", headers=_headers(ADMIN)).json()
    assert listed == {
        "identities": [{"identity": "George_W_Bush", "faces": 1, "metadata": None}],
        "total": 1,
    }
    assert client.get("/identities", headers=_headers(ADMIN)).json()["total"] == 0


def test_a_recognize_key_cannot_enrol_list_or_embed(client: TestClient) -> None:
    key = _key(client, Role.recognize, "gamma")
    h = _headers(key)
    for method, path, upload in [
        ("POST", "/collections/gamma/identities/Someone/faces", True),
        ("GET", "/collections/gamma/identities", False),
        ("GET", "/collections/gamma/identities/Someone", False),
        ("DELETE", "/collections/gamma/identities/Someone", False),
        ("POST", "/embed", True),
    ]:
        kwargs = {"files": image_file(BUSH)} if upload else {}
        response = client.request(method, path, headers=h, **kwargs)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    assert client.post("/collections/gamma/identify", files=image_file(BUSH), headers=h).is_success
    verify = {"image_a": BUSH.open("rb"), "image_b": BUSH_PROBE.open("rb")}
    assert client.post("/verify", files=verify, headers=h).json()["same_person"] is True


def test_a_key_learns_nothing_about_a_collection_it_does_not_open(client: TestClient) -> None:
    _enrol(client, ADMIN, "secret", "George_W_Bush", BUSH)
    key = _key(client, Role.manage, "mine")
    h = _headers(key)
    for path in ("/identities", "/identities/George_W_Bush", "/identify"):
        method = "POST" if path == "/identify" else "GET"
        kwargs = {"files": image_file(BUSH_PROBE)} if method == "POST" else {}
        existing = client.request(method, f"/collections/secret{path}", headers=h, **kwargs)
        kwargs = {"files": image_file(BUSH_PROBE)} if method == "POST" else {}
        absent = client.request(method, f"/collections/no-such{path}", headers=h, **kwargs)
        assert existing.status_code == absent.status_code == 404, path
        assert existing.json()["error"]["code"] == absent.json()["error"]["code"] == "not_found"
    # its own collection answers, and does not know the other collection's people
    assert client.get("/collections/mine/identities/George_W_Bush", headers=h).status_code == 404
    assert _who(client, key, "/collections/mine/identify", BUSH_PROBE)["identity"] is None
    names = [c["name"] for c in client.get("/collections", headers=h).json()["collections"]]
    assert "secret" not in names
    health = client.get("/health", headers=h).json()
    assert "secret" not in [c["name"] for c in health["collections"]]
    assert client.get("/health").json()["collections"] == []  # no key: no names
    everything = client.get("/health", headers=_headers(ADMIN)).json()["collections"]
    assert "secret" in [c["name"] for c in everything]
    # today's routes are the collection `default`, which this key does not open either
    _enrol(client, ADMIN, "default", "George_W_Bush", BUSH)
    for method, path in (("GET", "/identities"), ("GET", "/identities/George_W_Bush")):
        response = client.request(method, path, headers=h)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    identify = client.post("/identify", files=image_file(BUSH_PROBE), headers=h)
    assert identify.status_code == 404, identify.text
    enrol = client.post("/identities/Intruder/faces", files=image_file(BUSH), headers=h)
    assert enrol.status_code == 404, enrol.text
    assert client.delete("/identities/George_W_Bush", headers=_headers(ADMIN)).status_code == 204


def test_each_collection_has_the_threshold_calibrated_for_its_size(client: TestClient) -> None:
    people = sorted(p.name for p in (lfw("George_W_Bush", 1).parents[1]).iterdir())[:25]
    for name in people:
        photo = next(p for p in sorted((lfw(name, 1).parent).iterdir()))
        client.post(
            f"/collections/large/identities/{name}/faces",
            files=image_file(photo),
            headers=_headers(ADMIN),
        )
    _enrol(client, ADMIN, "small", "George_W_Bush", BUSH)
    listing = client.get("/collections", headers=_headers(ADMIN)).json()["collections"]
    by_name = {c["name"]: c for c in listing}
    small, large = by_name["small"], by_name["large"]
    assert small["identities"] == 1 and large["identities"] >= 20
    policy = client.app.state.faceid.components.recognizer.policy  # type: ignore[attr-defined]
    for entry in (small, large):
        expected = policy.threshold(entry["identities"], entry["faces"])
        assert entry["identification"]["value"] == pytest.approx(expected.value)
        assert entry["identification"]["identities"] == entry["identities"]
    assert large["identification"]["value"] > small["identification"]["value"]
    answer = client.post(
        "/collections/large/identify", files=image_file(BUSH_PROBE), headers=_headers(ADMIN)
    ).json()
    assert answer["threshold"]["value"] == pytest.approx(large["identification"]["value"])


def test_invalid_collection_names_are_refused(client: TestClient) -> None:
    response = client.get("/collections/-bad/identities", headers=_headers(ADMIN))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_collection"


# ---------------------------------------------------------------- the key command
def _keys_cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FACEID_DATA_DIR": str(data),
        "FACEID_MODEL_DIR": str(REAL_MODEL_DIR),
        "FACEID_API_KEYS": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "app.keys", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.subprocess
def test_keys_made_by_the_command_work_and_a_revoked_key_stops_on_every_process(
    face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    made = _keys_cli(data, "--json", "create", "--role", "manage", "--collection", "front")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    key, key_id = created["key"], created["key_id"]
    assert created["collections"] == ["front"]
    rows = sqlite3.connect(data / "gallery.sqlite3").execute("SELECT * FROM api_keys").fetchall()
    secret = key.split("_", 2)[2]  # the secret itself may contain "_"
    assert rows and all(key not in str(row) and secret not in str(row) for row in rows)

    # two processes' worth of service on one gallery, as FACEID_WORKERS runs them
    settings = make_settings(REAL_MODEL_DIR, data, sync_poll_ms=50)
    with running_app(settings, face_pipeline) as one, running_app(settings, face_pipeline) as two:
        for c in (one, two):
            assert c.get("/collections/front/identities", headers=_headers(key)).status_code == 200
            assert c.get("/identities").status_code == 401  # a database key turns auth on
        listed = _keys_cli(data, "--json", "list")
        assert [k["key_id"] for k in json.loads(listed.stdout)] == [key_id]
        revoked = _keys_cli(data, "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        for c in (one, two):
            _until(
                lambda c=c: (
                    c.get("/collections/front/identities", headers=_headers(key)).status_code == 401
                ),
                timeout=5,
            )
        # revoking the last key does not open the service
        assert one.get("/identities").status_code == 401
    assert _keys_cli(data, "revoke", key_id).returncode == 1
    assert _keys_cli(data, "create", "--role", "recognize").returncode == 2  # no collection
