"""One error envelope for every failure: ``{"error": {"code": str, "message": str}}``.

This module only maps errors onto HTTP, in each dialect's shape (native routes answer the
envelope; CompreFace clients read ``{"message", "code"}`` with CompreFace's numeric codes,
of which Double Take relies on 28 for "no face"; DeepStack clients read ``{"success":
false, "error", "duration"}``): the domain's errors (``app.domain_errors``), the
face pipeline's image refusals (``faces.ImageError``), the web layer's own ``ApiError``,
unknown routes (404), wrong methods (405), request validation (422) and unexpected
exceptions (500, in ``app.middleware``). Every code's status comes from the one table,
``app.error_codes.ERROR_CODES``. A traceback never reaches a client; it goes to the logs
with the request id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.domain_errors import DomainError
from app.error_codes import DEFAULT_CODE_OF_STATUS, status_of
from faces import ImageError

_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


class ApiError(StarletteHTTPException):
    """An error of the web layer itself (keys, readiness, uploads, unknown names),
    answered with the envelope: its code's status from ``ERROR_CODES``, the code and a
    human message."""

    def __init__(self, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status_code=status_of(code), detail=message, headers=dict(headers or {}))
        self.code = code
        self.message = message


class DialectError(ApiError):
    """A refusal only a dialect has (CompreFace's unknown subject or image, subject
    already exists, more than one face…), answered in that dialect's shape with its own
    status and number, e.g. ``{"message": ..., "code": 42}`` with 404."""

    def __init__(self, status: int, number: int, message: str) -> None:
        StarletteHTTPException.__init__(self, status_code=status, detail=message)
        self.code = "dialect_error"
        self.message = message
        self.number = number


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    *,
    status: int | None = None,
) -> JSONResponse:
    """The envelope for ``code``, with its status from ``ERROR_CODES`` (``status`` only for
    a bare framework error whose status has no code of ours)."""
    status = status_of(code) if status is None else status
    return JSONResponse(error_body(code, message), status_code=status, headers=dict(headers or {}))


def _format_location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"} and len(parts) > 1:
        return f"{parts[0]} '{'.'.join(parts[1:])}'"
    return ".".join(parts) or "request"


def scope_dialect(scope: Mapping[str, Any]) -> str:
    """Whose error bodies the request's route answers (its policy, which the access guard
    found and left in the scope; ``native`` before that)."""
    route = scope.get("faceid.route")
    return str(getattr(getattr(route, "policy", None), "dialect", "native"))


def _dialect(request: Request) -> str:
    return scope_dialect(request.scope)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if isinstance(exc, DialectError):
        return JSONResponse({"message": exc.message, "code": exc.number}, exc.status_code)
    return dialect_error(_dialect(request), exc.code, exc.message, exc.headers)


def refusal_response(exc: DomainError | ImageError, dialect: str = "native") -> JSONResponse:
    """The envelope of a domain or image refusal, with its code's status."""
    if isinstance(exc, ImageError):
        return dialect_error(dialect, exc.code, exc.message)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return dialect_error(dialect, exc.code, exc.public_message, headers)


def refusal_body(exc: DomainError | ImageError) -> dict[str, str]:
    """``{"code", "message"}`` of a refusal, as a per-photo outcome reports it."""
    message = exc.message if isinstance(exc, ImageError) else exc.public_message
    return {"code": exc.code, "message": message}


async def _refusal(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError | ImageError)
    return refusal_response(exc, _dialect(request))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on this path (for a complete ``Allow``)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, ApiError):
        return await _api_error(request, exc)
    code = DEFAULT_CODE_OF_STATUS.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    if exc.status_code == 400:  # only the body (multipart form) parser raises a bare 400
        detail = f"The multipart form could not be parsed: {detail}"
    elif exc.status_code == 404 and detail == "Not Found":
        detail = "No such route."
    elif exc.status_code == 405:
        allowed = allowed_methods(request)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
        detail = f"Method {request.method} is not allowed here; allowed: {', '.join(allowed)}."
    return dialect_error(_dialect(request), code, detail, headers, status=exc.status_code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{_format_location(err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    ]
    message = "; ".join(problems[:10]) or "The request is invalid."
    return dialect_error(_dialect(request), "validation_error", message)


#: Our code → (HTTP status, CompreFace code, message or None to keep ours).
_COMPREFACE: dict[str, tuple[int, int, str | None]] = {
    # CompreFace: a missing key is 400 code 20, an unknown one 404 code 10 (below)
    "unauthorized": (400, 20, None),
    "forbidden": (403, 10, None),
    "not_found": (404, 42, None),
    "no_face": (400, 28, "No face is found in the given image"),
    "invalid_image": (400, 28, "No face is found in the given image"),
    "unsupported_media_type": (400, 21, None),
    "too_large": (413, 0, None),
    "validation_error": (400, 26, None),
    "invalid_identity": (400, 36, None),
    "invalid_multipart": (400, 34, None),
    "multiple_files": (400, 34, None),
    "too_many_images": (400, 34, None),
    "low_quality": (400, 28, None),
    "storage_unavailable": (503, 41, None),
    "request_timeout": (408, 0, None),
}


def compreface_error(
    code: str, message: str, headers: Mapping[str, str] | None = None, status: int | None = None
) -> JSONResponse:
    """``{"message", "code"}`` as CompreFace answers."""
    http, number, text = _COMPREFACE.get(code, (status or _status(code), 0, None))
    if code == "unauthorized" and message.startswith("Invalid"):
        http, number = 404, 10
    return JSONResponse(
        {"message": text or message, "code": number},
        status_code=status if status and code not in _COMPREFACE else http,
        headers=dict(headers or {}),
    )


def deepstack_error(
    code: str, message: str, headers: Mapping[str, str] | None = None, status: int | None = None
) -> JSONResponse:
    """``{"success": false, "error", "duration": 0}`` as DeepStack answers (DeepStack's
    own texts where its clients know them)."""
    texts = {"unauthorized": "Incorrect api key", "no_face": "no face detected"}
    http = status or _status(code)
    if http in (415, 422):
        http = 400  # DeepStack answers 400 for every refused input ("invalid image" too)
    return JSONResponse(
        {"success": False, "error": texts.get(code, message), "duration": 0},
        status_code=http,
        headers=dict(headers or {}),
    )


def _status(code: str) -> int:
    try:
        return status_of(code)
    except KeyError:
        return 400


def dialect_error(
    dialect: str,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    status: int | None = None,
) -> JSONResponse:
    """The error ``code`` in ``dialect``'s shape (``status``: a bare framework error's)."""
    if dialect == "compreface":
        return compreface_error(code, message, headers, status)
    if dialect == "deepstack":
        return deepstack_error(code, message, headers, status)
    return error_response(code, message, headers, status=status)


def install_error_handlers(app: FastAPI) -> None:
    """Register the envelope handlers (500s are handled by RequestContextMiddleware)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ImageError, _refusal)
    app.add_exception_handler(DomainError, _refusal)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
