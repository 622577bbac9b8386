"""ASGI guards that act on a request before the app reads its body.

- ``ApiKeyMiddleware``: the API key is checked from the headers alone, so a client without
  one is answered 401 before a byte of its body is read (and the connection is closed).
- ``BodyGuardMiddleware``: wraps the body stream. It answers 408 when the body stalls
  (``FACEID_BODY_IDLE_TIMEOUT_S`` between two pieces, ``FACEID_BODY_TIMEOUT_S`` in all),
  and, for ``multipart/form-data``, follows the parts as they stream: a part over
  ``FACEID_MAX_UPLOAD_BYTES`` is refused with 413 at the byte that crosses the cap (so no
  part ever outgrows the in-memory buffer and reaches the disk), and a second file in one
  field is refused with 422 ``multiple_files`` instead of one of them being dropped (on
  routes that take several files in one field, enrolment, the file past the route's
  maximum is refused with 422 ``too_many_images``).

Errors are raised as ``ApiError`` from the wrapped ``receive``: FastAPI lets them through
its body parsing, and the app's handlers turn them into the envelope.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable, Collection

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, error_response

CLOSE = {"Connection": "close"}


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length.strip() != "0")


def keys_match(given: str, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key (no early exit)."""
    given_bytes = given.encode("utf-8")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_bytes, key.encode("utf-8"))
    return found


class ApiKeyMiddleware:
    """401 ``unauthorized`` from the ``Authorization`` header, before the body is read:
    the one place keys are checked.

    Every request needs a key (when keys are configured) unless ``is_public`` says its
    route answers without one (``app.route_policy``).
    """

    def __init__(
        self, app: ASGIApp, keys: Collection[str], is_public: Callable[[Scope], bool]
    ) -> None:
        self.app = app
        self.keys = tuple(keys)
        self.is_public = is_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or self.is_public(scope):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() and keys_match(token.strip(), self.keys):
            await self.app(scope, receive, send)
            return
        message = (
            "Invalid API key."
            if scheme.lower() == "bearer" and token.strip()
            else "Missing API key: send 'Authorization: Bearer <key>'."
        )
        extra = {"WWW-Authenticate": "Bearer"}
        if _has_body(headers):  # the body is left unread: close rather than drain it
            extra.update(CLOSE)
        await error_response("unauthorized", message, extra)(scope, receive, send)


class _PartWatcher:
    """Follows multipart parts as bytes arrive: per-part size cap, one file per field."""

    def __init__(self, boundary: bytes, part_limit: int, files_per_field: int = 1) -> None:
        self.part_limit = part_limit
        self.files_per_field = files_per_field
        self.files_seen: dict[bytes, int] = {}
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.part_bytes = 0
        self.problem: ApiError | None = None
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_part_data": self._data,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
            },
        )

    def _begin(self) -> None:
        self.part_bytes = 0
        self.disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def _header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = options.get(b"name")
        if name is None or b"filename" not in options:
            return
        seen = self.files_seen.get(name, 0) + 1
        self.files_seen[name] = seen
        if seen > self.files_per_field and self.problem is None:
            field = name.decode("utf-8", "replace")
            if self.files_per_field == 1:
                self.problem = ApiError(
                    "multiple_files",
                    f"Field '{field}' carries more than one file; send one file per field.",
                )
            else:
                self.problem = ApiError(
                    "too_many_images",
                    f"Field '{field}' carries more than {self.files_per_field} files; send at "
                    "most that many per request (or use python -m app.gallery enroll).",
                )

    def _data(self, data: bytes, start: int, end: int) -> None:
        self.part_bytes += end - start
        if self.part_bytes > self.part_limit and self.problem is None:
            self.problem = ApiError(
                "too_large",
                f"A part of the upload is over the {self.part_limit}-byte limit per file.",
                CLOSE,
            )

    def feed(self, chunk: bytes) -> None:
        """Parse ``chunk``; raise the first problem found. Malformed multipart is left to
        the app's own parser (which answers 400 ``invalid_multipart``)."""
        if self.parser is None:
            return
        try:
            self.parser.write(chunk)
        except Exception:
            self.parser = None  # type: ignore[assignment]
        if self.problem is not None:
            raise self.problem


class BodyGuardMiddleware:
    """Body timeouts (408) and, for multipart bodies, per-part caps and one file per field."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        part_limit: int,
        idle_timeout_s: float,
        total_timeout_s: float,
        files_per_field: Callable[[Scope], int] = lambda scope: 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.part_limit = part_limit
        self.files_per_field = files_per_field
        self.idle_timeout_s = idle_timeout_s
        self.total_timeout_s = total_timeout_s
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not _has_body(headers):
            await self.app(scope, receive, send)
            return
        watcher: _PartWatcher | None = None
        content_type, options = parse_options_header(headers.get("content-type"))
        if content_type == b"multipart/form-data" and b"boundary" in options:
            watcher = _PartWatcher(
                options[b"boundary"], self.part_limit, self.files_per_field(scope)
            )
        deadline = self.clock() + self.total_timeout_s
        done = False

        async def guarded_receive() -> Message:
            nonlocal done
            if done:  # the body is complete: later receives wait for a disconnect
                return await receive()
            wait = min(self.idle_timeout_s, deadline - self.clock())
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.0))
            except TimeoutError:
                raise ApiError(
                    "request_timeout",
                    "The request body stalled or took too long to arrive "
                    f"(limits: {self.idle_timeout_s:g} s between pieces, "
                    f"{self.total_timeout_s:g} s in all).",
                    CLOSE,
                ) from None
            if message["type"] == "http.request":
                if watcher is not None:
                    watcher.feed(message.get("body", b""))
                done = not message.get("more_body", False)
            return message

        await self.app(scope, guarded_receive, send)
