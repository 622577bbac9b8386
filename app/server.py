"""How uvicorn serves the app: connection-level limits and JSON errors from the server itself.

uvicorn has a keep-alive timeout but no timeout for reading a request's headers, and it
answers malformed requests with its own ``text/plain`` 400. ``FaceidHttpProtocol`` (its
httptools protocol, subclassed) adds:

- a deadline for the request line and headers (``FACEID_HEADER_TIMEOUT_S``): a client that
  opens a connection and sends nothing, or dribbles its headers, gets 408 and is closed;
- a cap on open connections (``FACEID_MAX_CONNECTIONS``): past it, ``HEALTH_RESERVE`` more
  connections are accepted for ``/health`` only (any other request on them gets 503 and is
  closed), so a client holding every slot cannot make the service look dead to its probes;
  one past those gets 503 at once and is closed, before anything is read;
- the error envelope ``{"error": {"code", "message"}}`` on the 400 for a request the HTTP
  parser rejects (malformed Content-Length, bad request line, ...).

Body timeouts are the app's (``app.guards.BodyTimeoutMiddleware``): they answer 408 too.
``server_config`` is what ``python -m app`` runs and what the tests start.
``stop_after_startup_failure`` ends a process whose model failed to load, so that uvicorn's
worker supervisor (``FACEID_WORKERS`` > 1) stops instead of restarting it forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from pathlib import Path
from typing import Any, NoReturn

import httptools
import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.error_codes import status_of
from app.errors import error_body
from app.settings import Settings

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 503: b"Service Unavailable"}

#: Connections accepted past FACEID_MAX_CONNECTIONS for GET /health only.
HEALTH_RESERVE = 8


def raw_error_response(code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response with the JSON envelope and ``Connection: close``
    (the status is the code's, from ``ERROR_CODES``)."""
    status = status_of(code)
    body = json.dumps(error_body(code, message)).encode("utf-8")
    head = (
        b"HTTP/1.1 %d %s\r\n"
        b"content-type: application/json\r\n"
        b"content-length: %d\r\n"
        b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))
    )
    return head + body


class FaceidHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header deadline, a connection cap and JSON 400s.

    Its limits come from ``config.faceid_limits`` (set by ``server_config``) or, in a
    process started by uvicorn itself (``--workers``), from the ``FACEID_*`` environment.
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limits: Limits = getattr(config, "faceid_limits", None) or _limits_from_environment()
        self.header_timeout_s, self.max_connections = limits
        self._header_timer: asyncio.TimerHandle | None = None
        self._health_only = False  # a connection in the /health reserve
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        open_now = len(self.connections)
        if open_now > self.max_connections + HEALTH_RESERVE:
            self.logger.warning("refusing a connection: %d open", open_now)
            transport.write(
                raw_error_response("unavailable", "Too many open connections; retry shortly.")
            )
            transport.close()
            return
        self._health_only = open_now > self.max_connections
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        if self._health_only and httptools.parse_url(self.url).path != b"/health":
            self._refused = True
            self.logger.warning("refusing a request: %d connections open", len(self.connections))
            self.transport.write(
                raw_error_response(
                    "unavailable",
                    "Too many open connections (only /health answers now); retry shortly.",
                )
            )
            self.transport.close()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The keep-alive timer now guards the idle connection until the next request.
        self._cancel_header_timer()

    def send_400_response(self, msg: str) -> None:
        self._cancel_header_timer()
        self.transport.write(
            raw_error_response("bad_request", f"The HTTP request is malformed: {msg}")
        )
        self.transport.close()

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy:  # a request is being answered; the keep-alive logic takes over after it
            return
        self.transport.write(
            raw_error_response(
                "request_timeout",
                f"The request headers did not arrive within {self.header_timeout_s:g} s.",
            )
        )
        self.transport.close()


Limits = tuple[float, int]


@functools.cache
def _limits_from_environment() -> Limits:
    settings = Settings()
    return settings.header_timeout_s, settings.max_connections


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options of the service (``uvicorn.Config(app, **...)`` or ``uvicorn.run``)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": FaceidHttpProtocol,
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        "timeout_keep_alive": max(1, round(settings.keep_alive_timeout_s)),
        "timeout_graceful_shutdown": 10,
    }


def server_config(settings: Settings, application: Any) -> uvicorn.Config:
    """The uvicorn configuration ``python -m app`` serves with."""
    config = uvicorn.Config(application, **server_options(settings))
    config.faceid_limits = (settings.header_timeout_s, settings.max_connections)  # type: ignore[attr-defined]
    return config


#: Set by ``python -m app`` for its worker processes: where a worker that cannot load the
#: model leaves the reason for the supervising command.
WORKER_FAILURE_FILE = "FACEID_WORKER_FAILURE_FILE"


def stop_after_startup_failure(reason: str) -> NoReturn:
    """End this process after its model failed to load.

    The exit status is uvicorn's ``STARTUP_FAILURE``: a uvicorn worker supervisor
    (``FACEID_WORKERS`` > 1, or ``uvicorn --workers``) then stops every worker instead of
    starting this one again, which would fail the same way forever. Under ``python -m app``
    the reason is left in ``FACEID_WORKER_FAILURE_FILE`` for it to report.
    """
    marker = os.environ.get(WORKER_FAILURE_FILE)
    if marker:
        with contextlib.suppress(OSError):
            Path(marker).write_text(reason, encoding="utf-8")
    logging.shutdown()  # flush the critical log line before the hard exit
    os._exit(STARTUP_FAILURE)
