"""The OpenAPI document: FastAPI's, post-processed so that it states every rule the service
enforces and so that client generators understand it.

``postprocess`` (pure, tested on its own):

- every upload field (``{"type": "string", "contentMediaType": ...}``, alone or as array
  items) also gets ``"format": "binary"``, the spelling of a file part that generators such
  as openapi-python-client recognise (OpenAPI 3.0 style); Swagger UI shows a file picker for
  either; the field is described as non-empty and capped at ``FACEID_MAX_UPLOAD_BYTES``;
- the ``identity`` path parameter gets its pattern and length (1-128 characters of letters,
  combining marks, digits, space and ``_ - . '``, at least one letter or digit, no space at
  either end);
- every operation lists every error status it can answer, each with the envelope schema
  and the codes it carries (from ``app.error_codes.ERROR_CODES``): 401 (keys), 408 (a
  stalled body), 413/400 (uploads), 422, 500, 503;
- every operation that needs a key (``app.route_policy.ROUTES``) states the Bearer
  security scheme.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.error_codes import describe
from app.gallery.names import (
    COLLECTION_PATTERN,
    IDENTITY_PATTERN,
    MAX_COLLECTION_LENGTH,
    MAX_IDENTITY_LENGTH,
)
from app.route_policy import COLLECTION_PREFIX, PROTECTED, ROUTES, is_public_template
from app.settings import Settings

_UPLOAD_STATUSES = (400, 408, 413, 415, 422)
#: The error body of a dialect's routes (``app.errors.dialect_error``), when not ours.
DIALECT_ERROR_REFS = {
    "deepstack": "#/components/schemas/DeepStackError",
    "compreface": "#/components/schemas/CompreFaceError",
}
_ALWAYS = (401, 403, 500, 503)


def operation_id(route: APIRoute) -> str:
    """The route's function name (``identify``, ``enroll``, ...) as its operationId, so that
    generated clients get short, stable method names (``…_in_collection`` for the same
    route under ``/collections/{collection}``)."""
    if route.path_format.startswith(COLLECTION_PREFIX + "/"):
        return f"{route.name}_in_collection"
    return route.name


def _is_file(schema: Any) -> bool:
    return (
        isinstance(schema, dict)
        and schema.get("type") == "string"
        and ("contentMediaType" in schema)
    )


def _mark_files(schema: Any, max_bytes: int, max_files: int) -> None:
    """Add ``format: binary`` (and the size rule) to every file field under ``schema``,
    and 1..``max_files`` items to every array of files (enrolment's repeated ``image``)."""
    if isinstance(schema, dict):
        if schema.get("type") == "array" and _is_file(schema.get("items")):
            schema["minItems"] = 1
            schema["maxItems"] = max_files
        if _is_file(schema):
            schema["format"] = "binary"
            schema["minLength"] = 1
            rule = f"Non-empty; at most {max_bytes} bytes."
            text = schema.get("description", "")
            if rule not in text:
                schema["description"] = f"{text} {rule}".strip()
        for value in schema.values():
            _mark_files(value, max_bytes, max_files)
    elif isinstance(schema, list):
        for value in schema:
            _mark_files(value, max_bytes, max_files)


def _error_response(status: int, ref: str) -> dict[str, Any]:
    return {
        "description": describe([status])[status],
        "content": {"application/json": {"schema": {"$ref": ref}}},
    }


#: Dialect routes answer errors in their own shape (``app.errors``).
COMPREFACE_ERROR = "CompreFaceError"
_COMPREFACE_ERROR_SCHEMA = {
    "title": COMPREFACE_ERROR,
    "type": "object",
    "description": "CompreFace's error body. `code`: 28 no face, 20 missing key, 10 unknown "
    "key (or a role that may not call the route), 42 unknown subject, 44 unknown image, 43 "
    "subject exists, 31 more than one face, 21 unsupported image or not base64, 5 empty "
    "field, 26 or 36 invalid parameter or name, 33/34 missing parameter or part, 0 other.",
    "required": ["message", "code"],
    "properties": {"message": {"type": "string"}, "code": {"type": "integer"}},
}


SECURITY_SCHEME = "HTTPBearer"
_BEARER = {
    "type": "http",
    "description": "An API key from FACEID_API_KEYS (only when keys are configured).",
    "scheme": "bearer",
}


def postprocess(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A copy of FastAPI's ``spec`` that states every rule (see the module docstring)."""
    spec = copy.deepcopy(spec)
    _mark_files(
        spec.get("components", {}).get("schemas", {}),
        settings.max_upload_bytes,
        settings.enroll_max_images,
    )
    native_ref = "#/components/schemas/ErrorResponse"
    spec.setdefault("components", {}).setdefault("securitySchemes", {})[SECURITY_SCHEME] = _BEARER
    for path, item in spec.get("paths", {}).items():
        public = is_public_template(path, settings)
        dialect = ROUTES.get(path, PROTECTED).dialect
        ref = DIALECT_ERROR_REFS.get(dialect, native_ref)
        if dialect == "compreface":
            schemas = spec["components"].setdefault("schemas", {})
            schemas[COMPREFACE_ERROR] = copy.deepcopy(_COMPREFACE_ERROR_SCHEMA)
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            if not public:
                operation["security"] = [{SECURITY_SCHEME: []}]
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "identity" and parameter.get("in") == "path":
                    parameter["schema"].update(
                        minLength=1, maxLength=MAX_IDENTITY_LENGTH, pattern=IDENTITY_PATTERN
                    )
                if parameter.get("name") == "collection" and parameter.get("in") == "path":
                    parameter["schema"].update(
                        minLength=1, maxLength=MAX_COLLECTION_LENGTH, pattern=COLLECTION_PATTERN
                    )
            responses = operation.setdefault("responses", {})
            statuses: set[int] = {500}
            if not public:
                statuses.update(_ALWAYS)
            if "requestBody" in operation:
                statuses.update(_UPLOAD_STATUSES)
            statuses.update(int(s) for s in responses if str(s).isdigit() and int(s) >= 400)
            for status in sorted(statuses):
                if public and status != 500:
                    continue  # /health's own 503 and /metrics stay as they are
                responses[str(status)] = _error_response(status, ref)
    return spec


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve the post-processed document at ``/openapi.json`` (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            base = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = postprocess(base, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
