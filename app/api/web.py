"""The web page at ``/``: one HTML file plus static ES modules and CSS from ``app/web/``.

No build step and no CDN: every asset ships in the repository and is served from the
service's own origin. The page itself needs no key; the API calls it makes send the key
the user typed (kept in the browser's session storage) as ``Authorization: Bearer``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
ASSETS_URL = "/web"
#: What a browser loads before it can send a key (page navigations carry no Authorization
#: header): the page and its static assets, which hold no data. A key check must let these
#: through or the page cannot load when keys are configured.
PUBLIC_PATHS = frozenset({"/"})
PUBLIC_PREFIXES = (f"{ASSETS_URL}/",)

# The page may talk to its own origin only; photos are shown from blob: URLs, camera
# frames from a MediaStream. Identity names are user input: the scripts never use innerHTML.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    """The single page (Identify, Enrol, Gallery, Verify)."""
    return FileResponse(
        WEB_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


def install_web(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/web/``."""
    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=WEB_DIR), name="web")
