"""ASGI guards that act on a request before the app reads its body.

- ``AccessMiddleware``: the API key is checked from the headers (or, on DeepStack routes,
  from the form fields that precede the first file part), so a client without one is
  answered 401 before a byte of its photos is read (and the connection is closed); the key's
  role and collections are checked against the route's policy.
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
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError, dialect_error
from app.gallery.storage import DEFAULT_COLLECTION
from app.keys import OPEN, KeyRing, Principal
from app.route_policy import GALLERY_ROUTES, RouteTable

CLOSE = {"Connection": "close"}


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length.strip() != "0")


class AccessMiddleware:
    """Who is calling, decided from the headers before the body is read: the one place
    keys are checked.

    The key comes as ``Authorization: Bearer <key>`` or ``x-api-key: <key>`` (CompreFace's
    header); on DeepStack routes also as the form field ``api_key``, read from the body's
    text fields *before* its first file part (DeepStack clients send it first), so a photo
    is never read for a caller without a key. The key is resolved once to a ``Principal``
    (``app.keys``) and checked against the route's policy (``app.route_policy``): 401
    without a valid key, 403 for a role that may not call the route, 404 for a collection
    the key does not open (the same answer as for no such collection). The principal and
    the request's collection are left in the scope for the routes (``app.api.deps``).
    """

    def __init__(
        self,
        app: ASGIApp,
        keyring: Callable[[], KeyRing | None],
        routes: RouteTable,
        idle_timeout_s: float = 10.0,
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.routes = routes
        self.idle_timeout_s = idle_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = self.routes.match(scope)
        keyring = self.keyring()
        headers = Headers(scope=scope)
        token = _header_key(headers)
        if keyring is None or not keyring.enabled:
            principal: Principal | None = OPEN
        else:
            principal = keyring.resolve(token) if token else None
            if (
                principal is None
                and not token
                and route.policy.dialect == "deepstack"
                and not self.routes.is_public(scope)
            ):
                try:
                    token, receive = await self._form_key(scope, headers, receive)
                except TimeoutError:
                    response = dialect_error(
                        "deepstack",
                        "request_timeout",
                        "The form stalled before its api_key field arrived "
                        f"(limit: {self.idle_timeout_s:g} s).",
                        CLOSE,
                    )
                    await response(scope, receive, send)
                    return
                principal = keyring.resolve(token) if token else None
        scope[PRINCIPAL] = principal
        if self.routes.is_public(scope):
            await self.app(scope, receive, send)
            return
        if principal is None:
            problem = ("unauthorized", "Invalid API key." if token else _MISSING)
        elif not principal.allows(route.policy.role):
            problem = (
                "forbidden",
                f"This key's role ({principal.role.name}) may not do this; it needs "
                f"{route.policy.role.name}.",
            )
        else:
            collection = route.params.get("collection")
            if collection is None and route.template in GALLERY_ROUTES:
                collection = DEFAULT_COLLECTION  # today's routes work on `default`
            if collection is not None and not principal.can_use(collection):
                problem = ("not_found", f"No collection named {collection[:80]!r}.")
            else:
                scope[COLLECTION] = collection or (
                    principal.home_collection if route.policy.dialect != "native" else None
                )
                await self.app(scope, receive, send)
                return
        extra = {"WWW-Authenticate": "Bearer"} if problem[0] == "unauthorized" else {}
        if _has_body(headers):  # the body is left unread: close rather than drain it
            extra.update(CLOSE)
        response = dialect_error(route.policy.dialect, problem[0], problem[1], extra)
        await response(scope, receive, send)

    async def _form_key(
        self, scope: Scope, headers: Headers, receive: Receive
    ) -> tuple[str, Receive]:
        """The ``api_key`` form field, read from the body up to its first file part, and
        a ``receive`` that replays what was read. At most 64 KiB of the body is read for
        it (beyond that: no key), within ``idle_timeout_s`` in all (TimeoutError)."""
        buffered: list[Message] = []
        reader = _FormKeyReader(headers)
        more = _has_body(headers)
        deadline = time.monotonic() + self.idle_timeout_s
        read = 0
        while more and not reader.done:
            wait = max(deadline - time.monotonic(), 0.0)
            message = await asyncio.wait_for(receive(), timeout=wait)
            buffered.append(message)
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            read += len(body)
            reader.feed(body)
            more = bool(message.get("more_body", False))
            if read > _MAX_FORM_BYTES and not reader.done:
                return "", receive  # no key within the first 64 KiB: refused unread
        if not more:
            reader.finish()

        async def replay() -> Message:
            if buffered:
                return buffered.pop(0)
            return await receive()

        return reader.key, replay


_MISSING = "Missing API key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>')."
#: Scope keys the access guard leaves for the routes.
PRINCIPAL = "faceid.principal"
COLLECTION = "faceid.collection"
_MAX_KEY_BYTES = 1024
_MAX_FORM_BYTES = 64 * 1024


def _header_key(headers: Headers) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip()


class _FormKeyReader:
    """Finds the ``api_key`` field of a form body as it streams: in a multipart body, up
    to the first file part (whose bytes it never looks at); in a URL-encoded one (small
    by nature), in the whole body up to 64 KiB."""

    def __init__(self, headers: Headers) -> None:
        self.key = ""
        self.done = False
        self._urlencoded = bytearray()
        self._parser: MultipartParser | None = None
        content_type, options = parse_options_header(headers.get("content-type"))
        self._kind = content_type
        self._name = b""
        self._is_file = False
        self._header = b""
        self._value = b""
        self._field = bytearray()
        if content_type == b"multipart/form-data" and b"boundary" in options:
            self._parser = MultipartParser(
                options[b"boundary"],
                {
                    "on_part_begin": self._part_begin,
                    "on_header_field": self._header_field,
                    "on_header_value": self._header_value,
                    "on_header_end": self._header_end,
                    "on_headers_finished": self._headers_finished,
                    "on_part_data": self._part_data,
                    "on_part_end": self._part_end,
                },
            )
        elif content_type != b"application/x-www-form-urlencoded":
            self.done = True

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        if self._parser is None:
            self._urlencoded += chunk
            if len(self._urlencoded) > _MAX_FORM_BYTES:
                self.done = True
            return
        try:
            self._parser.write(chunk)
        except Exception:
            self.done = True  # malformed: the app's own parser answers it

    def finish(self) -> None:
        if self._parser is None and not self.done:
            values = parse_qs(bytes(self._urlencoded).decode("latin-1"), keep_blank_values=True)
            self.key = values.get("api_key", [""])[0][:_MAX_KEY_BYTES]
        self.done = True

    def _part_begin(self) -> None:
        self._name, self._is_file, self._field = b"", False, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            _, options = parse_options_header(self._value)
            self._name = options.get(b"name", b"")
            self._is_file = b"filename" in options
        self._header, self._value = b"", b""

    def _headers_finished(self) -> None:
        if self._is_file:  # a file part before any api_key: no key in this body
            self.done = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name == b"api_key" and len(self._field) <= _MAX_KEY_BYTES:
            self._field += data[start:end]

    def _part_end(self) -> None:
        if self._name == b"api_key" and not self.done:
            self.key = bytes(self._field[:_MAX_KEY_BYTES]).decode("utf-8", "replace").strip()
            self.done = True


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

    def finish(self) -> None:
        """The body is complete: a multipart body must have ended with its closing
        boundary. Starlette's parser accepts a truncated body and hands the route whatever
        parts it finished, so a cut-off upload would read as a missing field (422)."""
        if self.parser is not None and self.parser.state != MultipartState.END:
            raise ApiError(
                "invalid_multipart",
                "The multipart form could not be parsed: the body ended before its closing "
                "boundary.",
            )


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
                done = not message.get("more_body", False)
                if watcher is not None:
                    watcher.feed(message.get("body", b""))
                    if done:
                        watcher.finish()
            return message

        await self.app(scope, guarded_receive, send)
