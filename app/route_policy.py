"""Who may call which route and how much body each may send: one table.

``ROUTES`` is keyed by route template (``/identities/{identity}/faces``, not a concrete
path). The access guard (``app.guards``), the body caps and the OpenAPI document (which
operations need a key, the ``security`` it states) all read it; a route that is not in
the table needs a ``manage`` key and takes one file part. Static-file mounts (page and
documentation assets: nothing secret) are public.

Native routes that work on a gallery exist twice: as today (the ``default`` collection)
and under ``/collections/{collection}``. The CompreFace and DeepStack dialects name no
collection: the key's own collection is used (``Principal.home_collection``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from starlette.routing import Mount, compile_path
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Scope

from app.keys import Role
from app.settings import Settings

Access = Literal["key", "public", "docs"]
Dialect = Literal["native", "compreface", "deepstack"]
# Multipart overhead allowed on top of the image bytes (boundaries, headers, small fields).
MULTIPART_SLACK = 64 * 1024
COLLECTION_PREFIX = "/collections/{collection}"


@dataclass(frozen=True)
class RoutePolicy:
    """``access``: ``key`` (a key when keys are configured), ``public`` (never), or
    ``docs`` (public with FACEID_DOCS_PUBLIC); ``role``: the least role a key needs;
    ``dialect``: whose error bodies it answers; ``file_fields``: upload fields in the body;
    ``repeated_files``: a field may repeat up to FACEID_ENROLL_MAX_IMAGES times;
    ``base64``: the files may also come base64-encoded in a JSON body (CompreFace), so
    each may take 4/3 of FACEID_MAX_UPLOAD_BYTES in the body."""

    access: Access = "key"
    role: Role = Role.manage
    dialect: Dialect = "native"
    file_fields: int = 1
    repeated_files: bool = False
    base64: bool = False

    def files_per_field(self, settings: Settings) -> int:
        """How many files one field of the body may hold."""
        return settings.enroll_max_images if self.repeated_files else 1

    def body_limit(self, settings: Settings) -> int:
        """The cap on the whole request body, in bytes."""
        files = self.file_fields * self.files_per_field(settings)
        per_file = settings.max_upload_bytes
        if self.base64:
            per_file = 4 * -(-per_file // 3)  # base64 of a max-size file, padding included
        return files * per_file + MULTIPART_SLACK


PROTECTED = RoutePolicy()
_PUBLIC = RoutePolicy(access="public", role=Role.recognize)
_DOCS = RoutePolicy(access="docs", role=Role.recognize)
_RECOGNIZE = RoutePolicy(role=Role.recognize)
_MANAGE = RoutePolicy(role=Role.manage)

#: Native routes on a gallery: also served under COLLECTION_PREFIX.
GALLERY_ROUTES: dict[str, RoutePolicy] = {
    "/identify": _RECOGNIZE,
    "/identities": _MANAGE,
    "/identities/{identity}": _MANAGE,
    "/identities/{identity}/faces": RoutePolicy(role=Role.manage, repeated_files=True),
    "/identities/{identity}/faces/{face_id}": _MANAGE,
    "/gallery/audit": _MANAGE,
    "/identities/{identity}/rename": _MANAGE,
    "/identities/{identity}/merge": _MANAGE,
    "/identities/{identity}/metadata": _MANAGE,
    "/identities/{identity}/faces/{face_id}/move": _MANAGE,
}

_CF = "/api/v1"
_CF_RECOGNIZE = RoutePolicy(role=Role.recognize, dialect="compreface", base64=True)
_CF_MANAGE = RoutePolicy(role=Role.manage, dialect="compreface", base64=True)
_DS_RECOGNIZE = RoutePolicy(role=Role.recognize, dialect="deepstack")
_DS_MANAGE = RoutePolicy(role=Role.manage, dialect="deepstack")

ROUTES: dict[str, RoutePolicy] = {
    "/health": _PUBLIC,
    "/metrics": _PUBLIC,
    "/": _PUBLIC,  # the web page asks for the key itself
    "/docs": _DOCS,
    "/docs/oauth2-redirect": _DOCS,
    "/redoc": _DOCS,
    "/openapi.json": _DOCS,
    "/verify": RoutePolicy(role=Role.recognize, file_fields=2),
    "/embed": _MANAGE,
    "/collections": _RECOGNIZE,
    **GALLERY_ROUTES,
    **{COLLECTION_PREFIX + path: policy for path, policy in GALLERY_ROUTES.items()},
    # CompreFace (app/api/compreface.py)
    f"{_CF}/recognition/recognize": _CF_RECOGNIZE,
    f"{_CF}/recognition/faces": _CF_MANAGE,
    f"{_CF}/recognition/faces/delete": _CF_MANAGE,
    f"{_CF}/recognition/faces/{{image_id}}": _CF_MANAGE,
    f"{_CF}/recognition/faces/{{image_id}}/verify": _CF_RECOGNIZE,
    f"{_CF}/recognition/subjects": _CF_MANAGE,
    f"{_CF}/recognition/subjects/": _CF_MANAGE,
    f"{_CF}/recognition/subjects/{{subject}}": _CF_MANAGE,
    f"{_CF}/detection/detect": _CF_RECOGNIZE,
    f"{_CF}/verification/verify": RoutePolicy(
        role=Role.recognize, dialect="compreface", file_fields=2, base64=True
    ),
    # DeepStack
    "/v1/vision/face": _DS_RECOGNIZE,
    "/v1/vision/face/": _DS_RECOGNIZE,
    "/v1/vision/face/recognize": _DS_RECOGNIZE,
    "/v1/vision/face/match": RoutePolicy(role=Role.recognize, dialect="deepstack", file_fields=2),
    "/v1/vision/face/register": RoutePolicy(
        role=Role.manage, dialect="deepstack", repeated_files=True
    ),
    "/v1/vision/face/list": _DS_MANAGE,
    "/v1/vision/face/delete": _DS_MANAGE,
}


def is_public_template(template: str, settings: Settings) -> bool:
    """Whether the route ``template`` answers without a key under these settings."""
    access = ROUTES.get(template, PROTECTED).access
    return access == "public" or (access == "docs" and settings.docs_public)


@dataclass(frozen=True)
class RouteMatch:
    """A request's route template (None: no route of the table), its policy and the
    values of the template's parameters."""

    template: str | None
    policy: RoutePolicy
    params: dict[str, str] = field(default_factory=dict)


class RouteTable:
    """``ROUTES`` applied to the requests of one app: the policy of a request's path
    (matched against the table's templates, as the router matches them), and the app's
    static-file mounts as public prefixes."""

    _SCOPE_KEY = "faceid.route"

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._static: tuple[str, ...] | None = None
        self._templates: list[tuple[re.Pattern[str], str, RoutePolicy]] = [
            (compile_path(template)[0], template, policy) for template, policy in ROUTES.items()
        ]

    def match(self, scope: Scope) -> RouteMatch:
        """The table's entry for ``scope`` (found once per request, kept in the scope)."""
        found = scope.get(self._SCOPE_KEY)
        if isinstance(found, RouteMatch):
            return found
        path = scope.get("path", "")
        found = RouteMatch(None, PROTECTED)
        for regex, template, policy in self._templates:
            hit = regex.match(path)
            if hit:
                found = RouteMatch(template, policy, hit.groupdict())
                break
        scope[self._SCOPE_KEY] = found
        return found

    def policy(self, scope: Scope) -> RoutePolicy:
        """The policy of the route template that ``scope``'s path matches."""
        return self.match(scope).policy

    def static_prefixes(self) -> tuple[str, ...]:
        """Static-file mounts (page and documentation assets: nothing secret), found once:
        the app mounts them before it serves."""
        if self._static is None:
            self._static = tuple(
                route.path.rstrip("/") + "/"
                for route in getattr(self.app, "routes", ())
                if isinstance(route, Mount) and isinstance(route.app, StaticFiles)
            )
        return self._static

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
