"""The OpenAPI document states every rule the service enforces (issues 12 and 17).

No model is loaded: ``create_app(...).openapi()`` builds the document without the lifespan.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_schema_validator import oas31_format_checker
from openapi_spec_validator import validate

from app.api.deps import validate_identity
from app.domain_errors import InvalidIdentity
from app.error_codes import ERROR_CODES, describe, markdown_table
from app.gallery.names import IDENTITY_PATTERN
from app.main import create_app
from app.openapi import postprocess
from app.settings import Settings

README = Path(__file__).resolve().parents[3] / "README.md"
UPLOAD_OPERATIONS = {
    ("/identify", "post"): {"image"},
    ("/embed", "post"): {"image"},
    ("/identities/{identity}/faces", "post"): {"image"},
    ("/verify", "post"): {"image_a", "image_b"},
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings(api_keys="")).openapi()


def _ecma_regex(instance: object) -> bool:
    """JSON Schema's ``regex`` format is ECMA-262 with Unicode (``\\p{L}`` included), which
    Python's ``re`` (the validator's default check) does not implement: compile it with an
    ECMA-262 engine instead."""
    if not isinstance(instance, str):
        return True
    try:
        jsonschema_rs.validator_for({"type": "string", "pattern": instance})
    except Exception:
        return False
    return True


@pytest.fixture
def ecma_regex_format() -> Iterator[None]:
    original = oas31_format_checker.checkers["regex"]
    oas31_format_checker.checkers["regex"] = (_ecma_regex, ())
    try:
        yield
    finally:
        oas31_format_checker.checkers["regex"] = original


def _request_schema(spec: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    body = spec["paths"][path][method]["requestBody"]["content"]["multipart/form-data"]
    ref = body["schema"]["$ref"].rsplit("/", 1)[-1]
    return spec["components"]["schemas"][ref]  # type: ignore[no-any-return]


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any], ecma_regex_format: None) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_an_invalid_pattern_is_still_caught(spec: dict[str, Any], ecma_regex_format: None) -> None:
    broken = postprocess(spec, Settings(api_keys=""))
    broken["paths"]["/identities/{identity}"]["get"]["parameters"][0]["schema"]["pattern"] = "(["
    with pytest.raises(Exception, match="regex"):
        validate(broken)


@pytest.mark.parametrize(("operation", "fields"), UPLOAD_OPERATIONS.items())
def test_every_upload_field_is_binary_for_generators(
    spec: dict[str, Any], operation: tuple[str, str], fields: set[str]
) -> None:
    schema = _request_schema(spec, *operation)
    assert set(schema["required"]) == fields
    for field in fields:
        prop = schema["properties"][field]
        if operation[0] == "/identities/{identity}/faces":  # several photos per request
            assert prop["type"] == "array"
            assert prop["minItems"] == 1 and prop["maxItems"] == 10
            prop = prop["items"]
        assert prop["type"] == "string"
        assert prop["format"] == "binary"  # openapi-python-client & co.
        assert prop["contentMediaType"] == "application/octet-stream"  # OpenAPI 3.1 / Swagger
        assert prop["minLength"] == 1
        assert "10485760 bytes" in prop["description"]


def test_postprocess_marks_file_arrays_and_is_idempotent() -> None:
    spec = {
        "paths": {},
        "components": {
            "schemas": {
                "Body": {
                    "properties": {
                        "images": {
                            "type": "array",
                            "items": {"type": "string", "contentMediaType": "image/jpeg"},
                        },
                        "note": {"type": "string"},
                    }
                }
            }
        },
    }
    once = postprocess(spec, Settings(api_keys="", max_upload_bytes=1000))
    twice = postprocess(once, Settings(api_keys="", max_upload_bytes=1000))
    assert once == twice
    props = once["components"]["schemas"]["Body"]["properties"]
    assert props["images"]["items"]["format"] == "binary"
    assert props["images"]["minItems"] == 1 and props["images"]["maxItems"] == 10
    assert "format" not in props["note"]
    assert "format" not in spec["components"]["schemas"]["Body"]["properties"]["images"]["items"]


def test_numeric_limits_are_in_the_schema(spec: dict[str, Any]) -> None:
    def params(path: str, method: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p["schema"] for p in spec["paths"][path][method]["parameters"]}

    identify = params("/identify", "post")
    assert identify["top_k"]["minimum"] == 1 and identify["top_k"]["maximum"] == 100
    threshold = identify["threshold"]["anyOf"][0]
    assert threshold["minimum"] == -1.0 and threshold["maximum"] == 1.0
    assert identify["max_faces"]["anyOf"][0]["maximum"] == 100
    listing = params("/identities", "get")
    assert listing["limit"]["minimum"] == 1 and listing["limit"]["maximum"] == 1000
    assert listing["offset"]["minimum"] == 0 and listing["offset"]["maximum"] == 1_000_000_000
    face_id = params("/identities/{identity}/faces/{face_id}", "delete")["face_id"]
    assert face_id["maxLength"] == 64


def test_every_operation_lists_its_errors_with_the_envelope(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            expected = {"500"}
            if path not in {"/health", "/metrics"}:
                expected |= {"401", "503"}
            if "requestBody" in operation:
                expected |= {"400", "408", "413", "415", "422"}
            if "{identity}" in path:
                expected |= {"422"}
            assert expected <= set(responses), (path, method, sorted(responses))
            # the dialects answer their own error shapes (app.errors)
            envelope = "ErrorResponse"
            if path.startswith("/v1/vision/"):
                envelope = "DeepStackError"
            elif path.startswith("/api/v1/"):
                envelope = "CompreFaceError"
            for status in expected - ({"503"} if path == "/health" else set()):
                content = responses[status]["content"]["application/json"]["schema"]
                assert content == {"$ref": f"#/components/schemas/{envelope}"}
                assert responses[status]["description"] == describe([int(status)])[int(status)]


def test_the_readme_error_table_is_the_table_of_codes() -> None:
    readme = README.read_text(encoding="utf-8")
    start = readme.index("| status | code | when |")
    table = readme[start : readme.index("\n\n", start)]
    assert table == markdown_table()


def _raised_codes() -> set[str]:
    """Every error code the source answers with: literal codes given to ``ApiError``,
    ``error_response``, ``raw_error_response`` and ``ImageError``, and the codes of the
    domain errors."""
    import app.domain_errors as domain

    root = README.parent
    calls = re.compile(
        r"(?:\b(?:ApiError|error_response|raw_error_response|ImageError)\(|problem = \()"
        r"\s*\"([a-z_]+)\""
    )
    codes: set[str] = set()
    for source in [*(root / "app").rglob("*.py"), *(root / "faces").rglob("*.py")]:
        codes.update(calls.findall(source.read_text(encoding="utf-8")))
    for value in vars(domain).values():
        if isinstance(value, type) and issubclass(value, domain.DomainError):
            codes.add(value.code)
    return codes


def test_every_code_the_source_answers_is_in_the_table(spec: dict[str, Any]) -> None:
    table = {entry.code for entry in ERROR_CODES}
    raised = _raised_codes()
    assert {"unauthorized", "no_face", "invalid_identity", "storage_unavailable"} <= raised
    assert raised <= table, sorted(raised - table)
    described = json.dumps(spec)
    # bad_request (the HTTP parser) and method_not_allowed (another method) concern no
    # operation of the document
    for code in table - {"bad_request", "method_not_allowed"}:
        assert f"`{code}`" in described, code


# ------------------------------------------------------------------ identity names
def _identity_schema(spec: dict[str, Any]) -> dict[str, Any]:
    [param] = spec["paths"]["/identities/{identity}"]["get"]["parameters"]
    return param["schema"]  # type: ignore[no-any-return]


def _service_accepts(name: str) -> bool:
    try:
        validate_identity(name)
    except InvalidIdentity:
        return False
    return True


NAMES = [
    "Ada Lovelace", "王小明", "José Ñúñez-O'Brien", "R2_D2.v3", "x" * 128, "x" * 129, "",
    " lead", "trail ", "...", "bad!", "<script>", "semi;colon", "tab\tname", "e\u0301",
    "\u0301", "١٢٣", "नमस्ते", "²", "a€", "😀", "a\u200bb", "_-.'a",
]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_identity_schema_agrees_with_the_service(spec: dict[str, Any], name: str) -> None:
    schema = _identity_schema(spec)
    assert schema["minLength"] == 1 and schema["maxLength"] == 128
    validator = jsonschema_rs.validator_for(schema)
    assert validator.is_valid(name) == _service_accepts(name), name


# Code points the service's Unicode database (Python's unicodedata) has not assigned yet
# are refused by the service; a regex engine with a newer Unicode may call them letters.
ASSIGNED = st.characters(exclude_categories=("Cn", "Cs"))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    name=st.text(ASSIGNED, min_size=0, max_size=140).map(lambda s: unicodedata.normalize("NFC", s))
)
def test_identity_schema_agrees_with_the_service_on_random_names(name: str) -> None:
    # NFC input: the service normalises names, and a few code points grow under NFC.
    schema = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": IDENTITY_PATTERN}
    assert jsonschema_rs.validator_for(schema).is_valid(name) == _service_accepts(name)
