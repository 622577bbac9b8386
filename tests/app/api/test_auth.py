"""API keys: Bearer auth on every route but /health and /metrics (tiny model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faceid_testkit import image_file, lfw, make_settings, running_app
from fastapi.testclient import TestClient

from app.keys import keys_match
from faces import FacePipeline

KEYS = "first-key-0123, second-key-4567"
GOOD = {"Authorization": "Bearer second-key-4567"}
PHOTO = lfw("Al_Gore", 1)


@pytest.fixture(scope="module")
def client(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    settings = make_settings(tiny_model_dir, tmp_path_factory.mktemp("data"), api_keys=KEYS)
    assert settings.api_keys == ("first-key-0123", "second-key-4567")
    assert "key-0123" not in repr(settings)  # keys never end up in logs via repr
    with running_app(settings, face_pipeline) as c:
        yield c


ROUTES = [
    ("post", "/identify", True),
    ("post", "/embed", True),
    ("post", "/identities/Someone/faces", True),
    ("get", "/identities", False),
    ("get", "/identities/Someone", False),
    ("delete", "/identities/Someone", False),
    ("delete", "/identities/Someone/faces/abc", False),
]


@pytest.mark.parametrize(("method", "path", "upload"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": "Bearer first-key-012"},  # a prefix of a real key
        {"Authorization": "Basic Zmlyc3Qta2V5LTAxMjM="},
        {"Authorization": "first-key-0123"},  # no scheme
    ],
)
def test_missing_or_wrong_key_is_401(
    client: TestClient, method: str, path: str, upload: bool, headers: dict[str, str]
) -> None:
    kwargs = {"files": image_file(PHOTO)} if upload else {}
    response = client.request(method.upper(), path, headers=headers, **kwargs)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-request-id"]


def test_verify_needs_a_key(client: TestClient) -> None:
    files = {**image_file(PHOTO, "image_a"), **image_file(PHOTO, "image_b")}
    assert client.post("/verify", files=files).status_code == 401
    assert client.post("/verify", files=files, headers=GOOD).status_code == 200


def test_either_configured_key_works(client: TestClient) -> None:
    for key in ("first-key-0123", "second-key-4567"):
        headers = {"Authorization": f"Bearer {key}"}
        enrolled = client.post(
            "/identities/Al Gore/faces", files=image_file(PHOTO), headers=headers
        )
        assert enrolled.status_code == 201, enrolled.text
    listing = client.get("/identities", headers=GOOD)
    assert listing.status_code == 200
    assert listing.json()["identities"] == [{"identity": "Al Gore", "faces": 2, "metadata": None}]
    found = client.post("/identify", files=image_file(PHOTO), headers=GOOD)
    assert found.json()["faces"][0]["identity"] == "Al Gore"
    assert client.delete("/identities/Al Gore", headers=GOOD).status_code == 204


DOCS = ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"]


def test_health_and_metrics_need_no_key(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("path", DOCS)
def test_docs_need_a_key_by_default(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthorized"
    assert client.get(path, headers=GOOD).status_code == 200


def test_unknown_paths_need_a_key_too(client: TestClient) -> None:
    assert client.get("/nope").status_code == 401
    assert client.get("/nope", headers=GOOD).status_code == 404


def test_docs_public_setting_opens_only_the_docs(
    tiny_model_dir: Path, face_pipeline: FacePipeline, tmp_path: Path
) -> None:
    settings = make_settings(tiny_model_dir, tmp_path, api_keys=KEYS, docs_public=True)
    with running_app(settings, face_pipeline) as public:
        for path in DOCS:
            assert public.get(path).status_code == 200, path
        assert public.get("/identities").status_code == 401
        assert public.post("/identify", files=image_file(PHOTO)).status_code == 401


def test_auth_is_checked_before_readiness(client: TestClient) -> None:
    state = client.app.state.faceid  # type: ignore[attr-defined]
    components, state.components = state.components, None
    try:
        assert client.get("/identities").status_code == 401
        assert client.get("/identities", headers=GOOD).status_code == 503
    finally:
        state.components = components


def test_key_comparison() -> None:
    keys = ("alpha", "beta")
    assert keys_match("beta", keys)
    assert not keys_match("bet", keys)
    assert not keys_match("", keys)
    assert not keys_match("gamma", ())
    assert keys_match("ключ", ("ключ",))  # non-ASCII keys compare as UTF-8 bytes


def test_static_mounts_are_public_and_nothing_else_is(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from starlette.staticfiles import StaticFiles

    from app.route_policy import RouteTable
    from app.settings import Settings

    app = FastAPI()
    app.mount("/assets", StaticFiles(directory=tmp_path), name="assets")
    for path in ("/health", "/docs", "/openapi.json", "/identities"):
        app.add_api_route(path, lambda: None)
    routes = RouteTable(app, Settings(api_keys="k"))

    def public(path: str) -> bool:
        return routes.is_public({"type": "http", "method": "GET", "path": path, "root_path": ""})

    assert public("/assets/app.js") and public("/health")
    for path in ("/assets", "/assetsX/app.js", "/docs", "/openapi.json", "/identities", "/x"):
        assert not public(path), path
    docs_public = RouteTable(app, Settings(api_keys="k", docs_public=True))
    scope = {"type": "http", "method": "GET", "path": "/docs", "root_path": ""}
    assert docs_public.is_public(scope)
