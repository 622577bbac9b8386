"""Browser tests: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright, against a
live service (uvicorn on a free port, the shipped model, an API key) that these fixtures
start in-process.

Playwright never downloads a browser here: it is pointed at the system Chromium. When the
browser cannot start, the tests skip with the reason, except under CI (``CI=true``, set by
``.ci/run``), where they fail: CI must not pass without having run them.

Every page records each request it makes (``Recorder``), so a test can assert that nothing
left the service's origin. Screenshots go to ``tests/output/browser/`` (git-ignored; set
``FACEID_TEST_OUTPUT`` to put them elsewhere).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browserkit import (
    API_KEY,
    CHROMIUM,
    CHROMIUM_ARGS,
    OUTPUT,
    LiveService,
    Recorder,
    Session,
    unavailable,
)
from faceid_testkit import REAL_MODEL_DIR, free_port, make_settings


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        unavailable(f"playwright is not installed ({exc}); pip install -e '.[dev]'")
    if not CHROMIUM.is_file():
        unavailable(f"{CHROMIUM} is missing: apt-get install -y chromium")
    manager = sync_playwright().start()
    try:
        chromium = manager.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    except Exception as exc:
        manager.stop()
        unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
    try:
        yield chromium
    finally:
        chromium.close()
        manager.stop()


@pytest.fixture(scope="session")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """uvicorn serving ``create_app`` (shipped model, one API key) on a free port."""
    import uvicorn

    from app.main import create_app

    settings = make_settings(
        REAL_MODEL_DIR,
        tmp_path_factory.mktemp("browser-data"),
        api_keys=API_KEY,
        engine="savedmodel",  # skips the TFLite conversion: these tests embed a few faces
    )
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="browser-test-service", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            assert thread.is_alive(), "the service stopped while starting"
            assert time.monotonic() < deadline, "the service did not become ready"
            try:
                if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        yield LiveService(base=base, key=API_KEY)
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@pytest.fixture
def session(
    browser: Any, live_service: LiveService, request: pytest.FixtureRequest
) -> Iterator[Session]:
    """A new context (desktop size, no stored key) whose every request is recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    recorder = Recorder(origin=live_service.base)
    context.route("**/*", recorder.route)
    context.on("request", recorder.on_request)
    context.on("requestfailed", recorder.on_request_failed)
    page = context.new_page()
    page.set_default_timeout(60_000)
    shots = OUTPUT / request.node.name.replace("/", "_")
    shots.mkdir(parents=True, exist_ok=True)
    crashes: list[str] = []  # uncaught exceptions in the page's scripts
    page.on("pageerror", lambda error: crashes.append(str(error)))
    try:
        yield Session(page=page, recorder=recorder, shots=shots, base=live_service.base)
    finally:
        context.close()
    assert crashes == [], f"the page threw: {crashes}"
