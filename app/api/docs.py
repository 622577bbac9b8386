"""``/docs`` (Swagger UI) and ``/redoc`` from assets the service ships, so they render
without internet.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN and a favicon from
FastAPI's website. Here the same pages point at the copies bundled in the pinned PyPI
package ``fastapi-offline`` (its ``static/`` folder: ``swagger-ui-bundle.js``,
``swagger-ui.css``, ``redoc.standalone.js``), served under ``/docs-assets``, with the
service's own favicon, no Google fonts and no online validator: no request from the docs
pages leaves the service's origin; a Content-Security-Policy makes the browser hold them to
that (ReDoc's bundle, for one, would fetch its sidebar logo from redocly's CDN). The
OpenAPI declares the Bearer scheme (the ``HTTPBearer`` dependency of the protected routes),
so Swagger UI's "Authorize" button takes an API key.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.params import Depends
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.api.web import ASSETS_URL as WEB_ASSETS_URL

DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
DOCS_ASSETS_URL = "/docs-assets"
#: Static third-party files (no data): a key check can let this prefix through.
PUBLIC_PREFIXES = (f"{DOCS_ASSETS_URL}/",)
DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
FAVICON = f"{WEB_ASSETS_URL}/favicon.svg"

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
# Inline styles: ReDoc (styled-components) and Swagger UI write <style> elements at run time.
_CSP = (
    "default-src 'self'; script-src 'self'{scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

SWAGGER_UI_PARAMETERS: dict[str, Any] = {
    "persistAuthorization": True,  # the key survives a reload of /docs
    "validatorUrl": None,  # no badge fetched from validator.swagger.io
    "displayRequestDuration": True,
}


def same_origin_only(page: HTMLResponse) -> HTMLResponse:
    """Add a Content-Security-Policy that lets ``page`` load and fetch from its own origin
    only; its inline scripts are allowed by their SHA-256, nothing else inline runs."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in (m.encode() for m in _INLINE_SCRIPT.findall(bytes(page.body).decode()))
    )
    page.headers["Content-Security-Policy"] = _CSP.format(scripts=hashes)
    return page


def install_docs(
    app: FastAPI,
    *,
    docs_url: str = "/docs",
    redoc_url: str = "/redoc",
    dependencies: Sequence[Depends] | None = None,
) -> None:
    """Add ``docs_url`` and ``redoc_url`` served from local assets. Create the app with
    ``docs_url=None, redoc_url=None`` so FastAPI's CDN pages are not registered as well;
    ``dependencies`` (e.g. the API-key check) apply to the two pages, not to the assets."""
    missing = [name for name in DOCS_ASSETS if not (DOCS_ASSETS_DIR / name).is_file()]
    if missing:  # a fastapi-offline release that moved its files: fail loudly, not blank
        raise RuntimeError(f"fastapi-offline lacks {missing} in {DOCS_ASSETS_DIR}")
    router = APIRouter(include_in_schema=False, dependencies=dependencies)
    redirect_url = f"{docs_url}/oauth2-redirect"

    def _root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @router.get(docs_url)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{FAVICON}",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
        return same_origin_only(page)

    @router.get(redirect_url)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get(redoc_url)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{FAVICON}",
            with_google_fonts=False,
        )
        return same_origin_only(page)

    app.include_router(router)
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")
    # FastAPI registered no pages of its own (its setup ran in __init__); the attributes now
    # say where ours are, for code that asks the app (e.g. which paths are public).
    app.docs_url, app.redoc_url = docs_url, redoc_url
    app.swagger_ui_oauth2_redirect_url = redirect_url
