"""Issue 17: a client generated from the live ``/openapi.json`` works.

The service runs with the shipped model and an API key (``live_server``: uvicorn as
``python -m app`` runs it). The pinned ``openapi-python-client`` generates a Python package
from the document the service serves, exactly as the README says, and the test drives the
service only through that package: enrol two photos of one person, identify a third (the
name comes back), identify a stranger (unknown), verify, embed, list, delete, and parse
error answers into the generated error model. The same document is validated with the
pinned ``openapi-spec-validator``.
"""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from faceid_testkit import REAL_MODEL_DIR, lfw, live_server, make_settings
from openapi_schema_validator import oas31_format_checker
from openapi_spec_validator import validate

from faces import FacePipeline

KEY = "generated-client-key"
PERSON, STRANGER = "Andre_Agassi", "Adam_Sandler"
NAME = "Andre Agassi"
GENERATOR_CONFIG = "post_hooks: []\npackage_name_override: faceid_client\n"


@pytest.fixture(scope="module")
def base(face_pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = make_settings(REAL_MODEL_DIR, tmp_path_factory.mktemp("gen"), api_keys=KEY)
    with live_server(settings, face_pipeline) as url:
        yield url


@pytest.fixture(scope="module")
def document(base: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def client_package(
    document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleType]:
    """``openapi-python-client generate --path openapi.json`` (the README's command)."""
    work = tmp_path_factory.mktemp("client")
    (work / "openapi.json").write_text(json.dumps(document), encoding="utf-8")
    (work / "config.yaml").write_text(GENERATOR_CONFIG, encoding="utf-8")
    generator = Path(sys.executable).with_name("openapi-python-client")
    run = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            "openapi.json",
            "--output-path",
            "faceid-client",
            "--config",
            "config.yaml",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    # generated into a temporary folder at run time, so it cannot be in the pytest config's
    # `pythonpath`: on sys.path for this module's tests only
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(work / "faceid-client"))
        try:
            yield importlib.import_module("faceid_client")
        finally:
            for name in [m for m in sys.modules if m.split(".")[0] == "faceid_client"]:
                del sys.modules[name]


def _api(package: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{name}")


def _file(package: ModuleType, path: Path) -> Any:
    types = importlib.import_module(f"{package.__name__}.types")
    return types.File(payload=path.open("rb"), file_name=path.name, mime_type="image/jpeg")


def test_the_served_document_is_valid(document: dict[str, Any]) -> None:
    import jsonschema_rs

    def ecma(instance: object) -> bool:  # JSON Schema's regex format is ECMA-262
        if isinstance(instance, str):
            jsonschema_rs.validator_for({"type": "string", "pattern": instance})
        return True

    original = oas31_format_checker.checkers["regex"]
    oas31_format_checker.checkers["regex"] = (ecma, (ValueError,))
    try:
        validate(document)
    finally:
        oas31_format_checker.checkers["regex"] = original


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_generated_client_drives_the_whole_api(base: str, client_package: ModuleType) -> None:
    pkg = client_package
    models = importlib.import_module(f"{pkg.__name__}.models")
    types = importlib.import_module(f"{pkg.__name__}.types")
    enroll = _api(pkg, "gallery.enroll")
    list_identities = _api(pkg, "gallery.list_identities")
    get_identity = _api(pkg, "gallery.get_identity")
    delete_face = _api(pkg, "gallery.delete_face")
    delete_identity = _api(pkg, "gallery.delete_identity")
    identify = _api(pkg, "recognition.identify")
    verify = _api(pkg, "recognition.verify")
    embed = _api(pkg, "recognition.embed")
    health = _api(pkg, "health.health")

    client = pkg.AuthenticatedClient(base_url=base, token=KEY, timeout=httpx.Timeout(120))
    with client as c:
        ready = health.sync(client=c)
        assert isinstance(ready, models.HealthResponse) and ready.status == "ok"
        dim = ready.model.embedding_dim

        # Two photos in one enrolment request: one outcome each.
        body = models.BodyEnroll(image=[_file(pkg, lfw(PERSON, n)) for n in (1, 2)])
        enrolled = enroll.sync(identity=NAME, client=c, body=body)
        assert isinstance(enrolled, models.EnrollResponse), enrolled
        assert enrolled.identity == NAME and enrolled.faces_detected >= 1
        assert enrolled.enrolled == 2 and [p.enrolled for p in enrolled.photos] == [True, True]
        face_ids = [p.face_id for p in enrolled.photos]
        assert enrolled.face_id == face_ids[0] and len(set(face_ids)) == 2

        found = identify.sync(client=c, body=models.BodyIdentify(image=_file(pkg, lfw(PERSON, 3))))
        assert isinstance(found, models.IdentifyResponse), found
        assert found.faces[0].identity == NAME
        assert found.faces[0].score >= ready.model.threshold

        stranger = identify.sync(
            client=c, body=models.BodyIdentify(image=_file(pkg, lfw(STRANGER, 1))), top_k=3
        )
        assert isinstance(stranger, models.IdentifyResponse)
        assert stranger.faces[0].identity is None
        assert stranger.faces[0].candidates[0].identity == NAME  # the nearest, but too far

        same = verify.sync(
            client=c,
            body=models.BodyVerify(
                image_a=_file(pkg, lfw(PERSON, 1)), image_b=_file(pkg, lfw(PERSON, 2))
            ),
        )
        assert isinstance(same, models.VerifyResponse) and same.same_person is True
        other = verify.sync(
            client=c,
            body=models.BodyVerify(
                image_a=_file(pkg, lfw(PERSON, 1)), image_b=_file(pkg, lfw(STRANGER, 1))
            ),
        )
        assert isinstance(other, models.VerifyResponse) and other.same_person is False

        embedded = embed.sync(client=c, body=models.BodyEmbed(image=_file(pkg, lfw(PERSON, 3))))
        assert isinstance(embedded, models.EmbedResponse)
        assert len(embedded.faces[0].embedding) == dim

        listing = list_identities.sync(client=c, limit=10, offset=0)
        assert isinstance(listing, models.IdentityList) and listing.total == 1
        assert [(i.identity, i.faces) for i in listing.identities] == [(NAME, 2)]
        detail = get_identity.sync(identity=NAME, client=c)
        assert isinstance(detail, models.IdentityDetail)
        assert [f.face_id for f in detail.faces] == face_ids

        gone = delete_face.sync_detailed(identity=NAME, face_id=face_ids[0], client=c)
        assert gone.status_code == 204
        erased = delete_identity.sync_detailed(identity=NAME, client=c)
        assert erased.status_code == 204
        after = identify.sync(client=c, body=models.BodyIdentify(image=_file(pkg, lfw(PERSON, 3))))
        assert isinstance(after, models.IdentifyResponse) and after.faces[0].identity is None

        # Error answers parse into the generated error model.
        notes = models.BodyIdentify(
            image=types.File(payload=io.BytesIO(b"not a photo"), file_name="notes.txt")
        )
        refused = identify.sync(client=c, body=notes)
        assert isinstance(refused, models.ErrorResponse), refused
        assert refused.error.code == "unsupported_media_type" and refused.error.message
        missing = get_identity.sync(identity=NAME, client=c)
        assert isinstance(missing, models.ErrorResponse) and missing.error.code == "not_found"
        bad_name = get_identity.sync(identity="bad!", client=c)
        assert isinstance(bad_name, models.ErrorResponse)
        assert bad_name.error.code == "invalid_identity"

    wrong = pkg.AuthenticatedClient(base_url=base, token="wrong-key")
    with wrong as w:
        denied = list_identities.sync(client=w)
        assert isinstance(denied, models.ErrorResponse) and denied.error.code == "unauthorized"
