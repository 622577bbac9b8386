"""One error envelope for every failure: ``{"error": {"code": str, "message": str}}``.

Handlers here turn API errors, image refusals, unknown routes (404), wrong methods (405),
request validation (422) and unexpected exceptions (500, in ``app.middleware``) into that
envelope. A traceback never reaches a client; it goes to the logs with the request id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from app.gallery.storage import StorageUnavailable
from faces import ImageError

_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")
_CODES_BY_STATUS = {
    400: "invalid_multipart",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(StarletteHTTPException):
    """An error answered with the envelope: status, machine-readable code, human message."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=dict(headers or {}))
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=dict(headers or {}))


def _format_location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"} and len(parts) > 1:
        return f"{parts[0]} '{'.'.join(parts[1:])}'"
    return ".".join(parts) or "request"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, exc.message, exc.headers)


# The face pipeline's refusals (``faces.ImageError`` codes) and the HTTP status of each.
IMAGE_ERROR_STATUS = {"invalid_image": 400, "too_large": 413, "unsupported_media_type": 415}


class StartupError(RuntimeError):
    """A configuration problem that must stop the service before it serves (exit code 2)."""


async def _image_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageError)
    return error_response(IMAGE_ERROR_STATUS.get(exc.code, 400), exc.code, exc.message)


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
    code = _CODES_BY_STATUS.get(exc.status_code, "http_error")
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
    return error_response(exc.status_code, code, detail, headers)


async def _storage_unavailable(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StorageUnavailable)
    return error_response(
        503,
        "storage_unavailable",
        "The gallery database is unreachable; nothing was changed. Retry shortly.",
        {"Retry-After": "2"},
    )


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{_format_location(err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    ]
    message = "; ".join(problems[:10]) or "The request is invalid."
    return error_response(422, "validation_error", message)


def install_error_handlers(app: FastAPI) -> None:
    """Register the envelope handlers (500s are handled by RequestContextMiddleware)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ImageError, _image_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
