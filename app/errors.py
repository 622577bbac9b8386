"""One error envelope for every failure: ``{"error": {"code": str, "message": str}}``.

This module only maps errors onto HTTP: the domain's errors (``app.domain_errors``), the
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


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.code, exc.message, exc.headers)


def refusal_response(exc: DomainError | ImageError) -> JSONResponse:
    """The envelope of a domain or image refusal, with its code's status."""
    if isinstance(exc, ImageError):
        return error_response(exc.code, exc.message)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return error_response(exc.code, exc.public_message, headers)


def refusal_body(exc: DomainError | ImageError) -> dict[str, str]:
    """``{"code", "message"}`` of a refusal, as a per-photo outcome reports it."""
    message = exc.message if isinstance(exc, ImageError) else exc.public_message
    return {"code": exc.code, "message": message}


async def _refusal(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError | ImageError)
    return refusal_response(exc)


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
    return error_response(code, detail, headers, status=exc.status_code)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        f"{_format_location(err.get('loc', ()))}: {err.get('msg', 'invalid')}"
        for err in exc.errors()
    ]
    message = "; ".join(problems[:10]) or "The request is invalid."
    return error_response("validation_error", message)


def install_error_handlers(app: FastAPI) -> None:
    """Register the envelope handlers (500s are handled by RequestContextMiddleware)."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ImageError, _refusal)
    app.add_exception_handler(DomainError, _refusal)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
