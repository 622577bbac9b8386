"""Which routes answer without a key and how much body each may send: one table.

``ROUTES`` is keyed by route template (``/identities/{identity}/faces``, not a concrete
path). The API-key guard, the body caps and the OpenAPI document (which operations need
a key, the ``security`` it states) all read it; a route that is not in the table needs a
key and takes one file part. Static-file mounts (page and documentation assets: nothing
secret) are public.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.routing import Mount, compile_path
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Scope

from app.settings import Settings

Access = Literal["key", "public", "docs"]
# Multipart overhead allowed on top of the image bytes (boundaries, headers, small fields).
MULTIPART_SLACK = 64 * 1024


@dataclass(frozen=True)
class RoutePolicy:
    """``access``: ``key`` (an API key when keys are configured), ``public`` (never), or
    ``docs`` (public with FACEID_DOCS_PUBLIC); ``file_fields``: upload fields in the body;
    ``repeated_files``: each field may repeat up to FACEID_ENROLL_MAX_IMAGES times."""

    access: Access = "key"
    file_fields: int = 1
    repeated_files: bool = False

    def files_per_field(self, settings: Settings) -> int:
        """How many files one field of the body may hold."""
        return settings.enroll_max_images if self.repeated_files else 1

    def body_limit(self, settings: Settings) -> int:
        """The cap on the whole request body, in bytes."""
        files = self.file_fields * self.files_per_field(settings)
        return files * settings.max_upload_bytes + MULTIPART_SLACK


PROTECTED = RoutePolicy()
ROUTES: dict[str, RoutePolicy] = {
    "/health": RoutePolicy(access="public"),
    "/metrics": RoutePolicy(access="public"),
    "/": RoutePolicy(access="public"),  # the web page asks for the key itself
    "/docs": RoutePolicy(access="docs"),
    "/docs/oauth2-redirect": RoutePolicy(access="docs"),
    "/redoc": RoutePolicy(access="docs"),
    "/openapi.json": RoutePolicy(access="docs"),
    "/verify": RoutePolicy(file_fields=2),
    "/identities/{identity}/faces": RoutePolicy(repeated_files=True),
}


def is_public_template(template: str, settings: Settings) -> bool:
    """Whether the route ``template`` answers without a key under these settings."""
    access = ROUTES.get(template, PROTECTED).access
    return access == "public" or (access == "docs" and settings.docs_public)


class RouteTable:
    """``ROUTES`` applied to the requests of one app: the policy of a request's path
    (matched against the table's templates, as the router matches them), and the app's
    static-file mounts as public prefixes."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._templates = [
            (compile_path(template)[0], policy) for template, policy in ROUTES.items()
        ]

    def policy(self, scope: Scope) -> RoutePolicy:
        """The policy of the route template that ``scope``'s path matches."""
        path = scope.get("path", "")
        for regex, policy in self._templates:
            if regex.match(path):
                return policy
        return PROTECTED

    def static_prefixes(self) -> tuple[str, ...]:
        """Static-file mounts (page and documentation assets: nothing secret)."""
        return tuple(
            route.path.rstrip("/") + "/"
            for route in getattr(self.app, "routes", ())
            if isinstance(route, Mount) and isinstance(route.app, StaticFiles)
        )

    def is_public(self, scope: Scope) -> bool:
        """Whether ``scope`` may be served without a key."""
        policy = self.policy(scope)
        if policy.access == "public" or (policy.access == "docs" and self.settings.docs_public):
            return True
        return str(scope.get("path", "")).startswith(self.static_prefixes())

    def body_limit(self, scope: Scope) -> int:
        """The body cap of the request ``scope``."""
        return self.policy(scope).body_limit(self.settings)

    def files_per_field(self, scope: Scope) -> int:
        """How many files one multipart field of ``scope``'s body may hold (enrolment
        takes several only on POST)."""
        if scope.get("method") != "POST":
            return 1
        return self.policy(scope).files_per_field(self.settings)
