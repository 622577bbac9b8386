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
  and the codes it carries: 401 (keys), 408 (a stalled body), 413/400 (uploads), 422,
  500, 503.

``public_paths`` says which paths answer without a key: ``/health``, ``/metrics`` and,
with ``FACEID_DOCS_PUBLIC=true``, the documentation pages; ``public_prefixes``: static-file
mounts.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from app.settings import Settings

IDENTITY_PATTERN = r"^(?! )(?!.* $)[\p{L}\p{M}\p{Nd} _.'-]*[\p{L}\p{Nd}][\p{L}\p{M}\p{Nd} _.'-]*$"
IDENTITY_MAX_LENGTH = 128

#: Every error the service answers, by HTTP status: the codes it carries and when.
ERROR_CODES: dict[int, str] = {
    400: "`invalid_image`: the upload is not a decodable image; `invalid_multipart`: the "
    "multipart form cannot be parsed; `bad_request`: the HTTP request itself is malformed",
    401: "`unauthorized`: missing or wrong API key (only when keys are configured)",
    404: "`not_found`: no such identity, face or route",
    405: "`method_not_allowed`: the path exists with other methods (see `Allow`)",
    408: "`request_timeout`: the headers or the body did not arrive in time",
    413: "`too_large`: an upload over the byte cap or a photo over the pixel cap",
    415: "`unsupported_media_type`: not JPEG, PNG, WebP, BMP or PGM/PPM",
    422: "`validation_error`: a parameter or field breaks its schema; `invalid_identity`: "
    "a bad identity name; `multiple_files`: two files in one field; `too_many_images`: more "
    "photos in one enrolment than FACEID_ENROLL_MAX_IMAGES; `no_face`: no face found; "
    "`low_quality`: enrolment refused a face under the quality floor; `no_photo_enrolled`: "
    "none of several enrolment photos could be enrolled",
    500: "`internal_error`: a bug; quote the request id",
    503: "`starting` while the model loads, `unavailable` when it failed to load or too many "
    "connections are open",
}

_UPLOAD_STATUSES = (400, 408, 413, 415, 422)
_ALWAYS = (401, 500, 503)


def operation_id(route: APIRoute) -> str:
    """The route's function name (``identify``, ``enroll``, ...) as its operationId, so that
    generated clients get short, stable method names."""
    return route.name


def public_prefixes(app: FastAPI) -> tuple[str, ...]:
    """Static-file mounts (page and documentation assets: nothing secret) answer without a
    key, so that a browser can load a page that then asks for the key itself."""
    return tuple(
        route.path.rstrip("/") + "/"
        for route in app.router.routes
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles)
    )


def public_paths(app: FastAPI, settings: Settings) -> set[str]:
    """Paths that answer without an API key: health, metrics and the web page (which asks
    for the key itself); the docs too with ``FACEID_DOCS_PUBLIC``."""
    from app.api import web

    paths = {"/health", "/metrics", *web.PUBLIC_PATHS}
    if settings.docs_public:
        docs = (app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url)
        paths.update(url for url in docs if url)
    return paths


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
        "description": ERROR_CODES[status],
        "content": {"application/json": {"schema": {"$ref": ref}}},
    }


def postprocess(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A copy of FastAPI's ``spec`` that states every rule (see the module docstring)."""
    spec = copy.deepcopy(spec)
    _mark_files(
        spec.get("components", {}).get("schemas", {}),
        settings.max_upload_bytes,
        settings.enroll_max_images,
    )
    ref = "#/components/schemas/ErrorResponse"
    public = {"/health", "/metrics"}
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "identity" and parameter.get("in") == "path":
                    parameter["schema"].update(
                        minLength=1, maxLength=IDENTITY_MAX_LENGTH, pattern=IDENTITY_PATTERN
                    )
            responses = operation.setdefault("responses", {})
            statuses: set[int] = {500}
            if path not in public:
                statuses.update(_ALWAYS)
            if "requestBody" in operation:
                statuses.update(_UPLOAD_STATUSES)
            statuses.update(int(s) for s in responses if str(s).isdigit() and int(s) >= 400)
            for status in sorted(statuses):
                if path in public and status != 500:
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
