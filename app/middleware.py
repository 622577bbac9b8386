"""ASGI middleware: request id + access log + metrics + last-resort 500, and the body cap."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, dialect_error, scope_dialect
from app.log import request_id_var
from app.metrics import Metrics

access_log = logging.getLogger("faceid.access")
error_log = logging.getLogger("faceid.error")

REQUEST_ID_HEADER = "X-Request-ID"
CLOSE = {"Connection": "close"}
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def route_label(scope: Scope) -> str:
    """The matched route template (bounded cardinality), or 'unmatched'."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContextMiddleware:
    """Outermost: X-Request-ID on every response, JSON access log, metrics, 500 envelope."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER)
        request_id = (
            incoming if incoming and _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        )
        token = request_id_var.set(request_id)
        status = 500
        started = False
        t0 = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception("unhandled error in %s %s", scope.get("method"), scope["path"])
            status = 500
            if not started:
                response = dialect_error(
                    scope_dialect(scope),
                    "internal_error",
                    f"Internal server error; quote request id {request_id} when reporting it.",
                    {REQUEST_ID_HEADER: request_id},
                )
                await response(scope, receive, send)
        finally:
            seconds = time.perf_counter() - t0
            route = route_label(scope)
            method = str(scope.get("method", ""))
            self.metrics.observe_request(route, method, status, seconds)
            access_log.info(
                "%s %s %d",
                method,
                scope["path"],
                status,
                extra={
                    "method": method,
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "latency_ms": round(seconds * 1000.0, 2),
                },
            )
            request_id_var.reset(token)


class BodySizeLimitMiddleware:
    """Refuse request bodies over a cap with 413, checked from Content-Length and while
    streaming, so an oversize upload is never buffered whole."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int | None]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in {"POST", "PUT", "PATCH"}:
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        if limit is None:
            await self.app(scope, receive, send)
            return
        message = f"The request body is over the {limit}-byte limit."
        length = Headers(scope=scope).get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await dialect_error(scope_dialect(scope), "too_large", message, CLOSE)(
                scope, receive, send
            )
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise ApiError("too_large", message)
            return msg

        await self.app(scope, limited_receive, send)
