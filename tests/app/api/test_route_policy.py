"""The route-policy table: public routes and body limits by route template (issue 22)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.main import create_app
from app.route_policy import MULTIPART_SLACK, ROUTES, RouteTable
from app.settings import Settings


def _scope(method: str, path: str) -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "root_path": ""}


def test_body_limits_follow_the_route_template() -> None:
    settings = Settings(api_keys="", max_upload_bytes=1000, enroll_max_images=7)
    routes = RouteTable(FastAPI(), settings)
    assert routes.body_limit(_scope("POST", "/identify")) == 1000 + MULTIPART_SLACK
    assert routes.body_limit(_scope("POST", "/verify")) == 2000 + MULTIPART_SLACK
    enrol = _scope("POST", "/identities/Ada Lovelace/faces")
    assert routes.body_limit(enrol) == 7000 + MULTIPART_SLACK
    assert routes.files_per_field(enrol) == 7
    # a name that merely ends in /faces, or another method, is not the enrolment route
    assert routes.files_per_field(_scope("POST", "/identities/a/b/faces")) == 1
    assert routes.files_per_field(_scope("GET", "/identities/Ada/faces")) == 1


def test_public_templates_answer_without_a_key_and_nothing_else_does() -> None:
    app = create_app(Settings(api_keys="k", docs_public=True))
    client = TestClient(app)  # no lifespan: no model is loaded, routing and guards run
    for template, policy in ROUTES.items():
        if policy.access != "key":
            response = client.get(template)
            assert response.status_code not in (401, 404), (template, response.status_code)
    for path in ("/identities", "/identities/Ada", "/no-such-route"):
        assert client.get(path).status_code == 401, path
    spec = app.openapi()
    for path, item in spec["paths"].items():
        public = path in ROUTES and ROUTES[path].access == "public"
        for operation in item.values():
            assert ("security" in operation) is not public, path
