"""/docs and /redoc render from the service's own assets (issue 16): in headless Chromium with
every request to another origin cut off and recorded, Swagger UI lists the operations and its
"Authorize" button takes the API key, ReDoc renders, and nothing left the origin.

The service here has an API key. Whether the documentation needs it is the hardening issue's
call (not this one's), so the browser sends it with the documentation's own loads (pages,
their assets, /openapi.json) as a proxy would; the API call made from Swagger UI gets no such
help and needs "Authorize"."""

from __future__ import annotations

import re

import httpx
from browserkit import LiveService, Session
from faceid_testkit import LFW

from app.api.docs import DOCS_ASSETS, DOCS_ASSETS_DIR

REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
FACE_PHOTO = LFW / "Al_Gore" / "Al_Gore_0001.jpg"


def test_swagger_ui_renders_offline_and_authorize_takes_the_key(
    session: Session, live_service: LiveService
) -> None:
    page = session.page
    session.recorder.page_key = live_service.key
    page.goto(f"{session.base}/docs")
    identify = page.locator(".opblock.opblock-post", has_text="/identify").first
    identify.wait_for()
    assert identify.locator(".opblock-summary-method").inner_text() == "POST"
    assert identify.locator(".opblock-summary-path").inner_text().strip() == "/identify"
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    for path in ("/identify", "/verify", "/identities", "/health"):
        assert path in [p.strip() for p in paths], paths
    session.shot("docs")

    # "Authorize" with the Bearer scheme, then a protected call from the page answers 200.
    page.get_by_role("button", name=re.compile("Authorize")).first.click()
    dialog = page.locator(".modal-ux")
    assert "HTTPBearer" in dialog.inner_text() and "Bearer" in dialog.inner_text()
    dialog.locator("input").first.fill(live_service.key)
    dialog.locator(".auth-btn-wrapper button.authorize").click()
    assert "Authorized" in dialog.inner_text()
    dialog.locator(".auth-btn-wrapper button.btn-done").click()
    listing = page.locator(".opblock.opblock-get", has_text="/identities").first
    listing.locator(".opblock-summary").click()
    listing.get_by_role("button", name="Try it out").click()
    listing.get_by_role("button", name="Execute").click()
    status = listing.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    session.shot("docs-authorized-call")

    # Swagger UI's file picker still works for upload fields (format: binary, issue 17):
    # a photo chosen in it is sent as bytes and /embed finds its face.
    embed = page.locator(".opblock.opblock-post", has_text="/embed").first
    embed.locator(".opblock-summary").click()
    embed.get_by_role("button", name="Try it out").click()
    embed.locator("input[type=file]").first.set_input_files(str(FACE_PHOTO))
    embed.get_by_role("button", name="Execute").click()
    status = embed.locator(".live-responses-table .response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    assert '"quality"' in embed.locator(".live-responses-table .response").first.inner_text()
    session.shot("docs-file-upload")

    assert session.recorder.foreign == [], session.recorder.foreign
    requested = {url.removeprefix(session.base) for url in session.recorder.seen}
    assert {"/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"} <= requested


def test_redoc_renders_offline(session: Session, live_service: LiveService) -> None:
    page = session.page
    session.recorder.page_key = live_service.key
    page.goto(f"{session.base}/redoc")
    heading = page.locator("h1", has_text="faceid").first
    heading.wait_for()
    page.locator("h2", has_text="Identify every face in a photo").first.wait_for()
    assert page.locator("[data-section-id*='identify']").count() >= 1
    session.shot("redoc", full_page=False)
    assert session.recorder.sent == [], session.recorder.sent
    # ReDoc's bundle always asks for its "API docs by Redocly" logo from redocly's CDN; the
    # page's Content-Security-Policy stops that inside the browser (the logo is left out).
    assert set(session.recorder.blocked) <= {REDOCLY_LOGO}, session.recorder.blocked
    assert f"{session.base}/docs-assets/redoc.standalone.js" in session.recorder.seen


def test_docs_pages_name_no_other_origin(live_service: LiveService) -> None:
    """The HTML itself points only at this service (no CDN, no Google fonts, no favicon from
    fastapi's site), the assets are served, and the OpenAPI declares the Bearer scheme."""
    auth = {"Authorization": f"Bearer {live_service.key}"}
    for path in ("/docs", "/redoc"):
        html = httpx.get(f"{live_service.base}{path}", headers=auth, timeout=10).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
        assert urls and all(u.startswith("/") for u in urls), urls
        assert "cdn." not in html and "googleapis" not in html and "tiangolo" not in html
    for name in DOCS_ASSETS:
        response = httpx.get(f"{live_service.base}/docs-assets/{name}", timeout=10)
        assert (
            response.status_code == 200
            and response.content == (DOCS_ASSETS_DIR / name).read_bytes()
        )
    spec = httpx.get(f"{live_service.base}/openapi.json", headers=auth, timeout=10).json()
    bearer = spec["components"]["securitySchemes"]["HTTPBearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert {"HTTPBearer": []} in spec["paths"]["/identify"]["post"]["security"]
