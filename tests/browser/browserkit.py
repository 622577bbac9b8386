"""Helpers of the browser tests (fixtures are in conftest.py): the Chromium set-up, the live
service handle, the request recorder and the per-test browser session."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from app.settings import REPO_ROOT

CHROMIUM = Path(os.environ.get("FACEID_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = "browser-test-key"
OUTPUT = Path(os.environ.get("FACEID_TEST_OUTPUT", REPO_ROOT / "tests" / "output")) / "browser"


def unavailable(reason: str) -> None:
    """Fail under CI, skip elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class LiveService:
    """A running service: its base URL and the API key it accepts."""

    base: str
    key: str

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )

    def clear_gallery(self) -> None:
        """Erase everyone, in every collection."""
        with self.client() as c:
            for collection in c.get("/collections").json()["collections"]:
                prefix = in_collection(collection["name"])
                while True:
                    page = c.get(f"{prefix}/identities", params={"limit": 1000}).json()
                    if not page["identities"]:
                        break
                    for person in page["identities"]:
                        path = f"{prefix}/identities/{person['identity']}"
                        assert c.delete(path).status_code == 204


def in_collection(collection: str) -> str:
    """The path prefix of a collection's gallery routes ("" for ``default``)."""
    return "" if collection == "default" else f"/collections/{collection}"


@dataclass
class Recorder:
    """Every request of a browser context. ``sent`` lists those to another origin that reached
    the network stack (aborted here, as if the network were cut off); ``blocked`` those the
    page's Content-Security-Policy stopped inside the browser, before any network access."""

    origin: str
    seen: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    # With ``page_key``, requests for these paths carry it as a Bearer token, as a proxy or
    # browser extension would add it: documentation pages behind a key can then load, while
    # API calls still need the page's own header (Swagger UI's "Authorize").
    page_key: str | None = None
    page_paths: tuple[str, ...] = ("/docs", "/redoc", "/openapi.json")

    def local(self, url: str) -> bool:
        return url.startswith(("data:", "blob:")) or same_origin(url, self.origin)

    def route(self, route: Any) -> None:
        url = route.request.url
        self.seen.append(url)
        if self.local(url):
            if self.page_key and urlsplit(url).path.startswith(self.page_paths):
                headers = {**route.request.headers, "authorization": f"Bearer {self.page_key}"}
                route.continue_(headers=headers)
            else:
                route.continue_()
        else:
            self.sent.append(url)
            route.abort("internetdisconnected")

    def on_request(self, request: Any) -> None:
        """Requests the route does not see (a service worker's, say) count as sent."""
        if not self.local(request.url) and request.url not in self.sent:
            self.sent.append(request.url)

    def on_request_failed(self, request: Any) -> None:
        if request.failure == "csp" and request.url in self.sent:
            self.sent.remove(request.url)
            self.blocked.append(request.url)

    @property
    def foreign(self) -> list[str]:
        """Every attempt at another origin, sent or blocked."""
        return self.sent + self.blocked


def same_origin(url: str, origin: str) -> bool:
    a, b = urlsplit(url), urlsplit(origin)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


@dataclass
class Session:
    """A fresh browser context with its page, request recorder and screenshot folder."""

    page: Any
    recorder: Recorder
    shots: Path
    base: str

    def shot(self, name: str, **kwargs: Any) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), **kwargs)
        print(f"screenshot: {path}")
        return path
