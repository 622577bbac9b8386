"""The application factory and its lifespan.

``create_app(settings)`` builds the FastAPI app; its lifespan runs the fast startup checks
(model card, preprocessing version, gallery model version: a mismatch stops the process
with a clear message), then loads and warms up the model, the face detector and the
gallery index in the background while ``/health`` answers 503 ``starting``.

``uvicorn app.main:app`` works too: ``app`` is created on first access with settings
from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Depends, FastAPI
from starlette.formparsers import MultiPartParser
from starlette.types import Scope

from app.api import embed, health, identify, identities, metrics, verify
from app.api.deps import require_api_key
from app.api.docs import install_docs
from app.api.web import install_web
from app.errors import StartupError, install_error_handlers
from app.guards import ApiKeyMiddleware, BodyGuardMiddleware
from app.metrics import Metrics
from app.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.openapi import install_openapi, operation_id, public_paths, public_prefixes
from app.server import stop_after_startup_failure
from app.settings import Settings
from app.state import Preflight, ServiceState, build, preflight
from faces import FacePipeline

log = logging.getLogger("faceid.main")

API_VERSION = "1.0.0"
# Multipart overhead allowed on top of the image bytes (boundaries, headers, small fields).
_MULTIPART_SLACK = 64 * 1024

DESCRIPTION = """
Face identification over HTTP. Enroll people with a photo or more, then ask who is in a
new photo. Only embeddings and metadata are stored, never photos; `DELETE
/identities/{identity}` erases a person.

Errors always come as `{"error": {"code": ..., "message": ...}}`. When API keys are
configured, send `Authorization: Bearer <key>` on every path but `/health` and `/metrics`
(these documentation pages included, unless `FACEID_DOCS_PUBLIC=true`).
"""


def create_app(
    settings: Settings | None = None,
    *,
    pipeline: FacePipeline | None = None,
    checked: Preflight | None = None,
    on_startup_failure: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the service. ``pipeline`` lets tests share one face detector across apps;
    ``checked``: the startup checks already run by ``python -m app`` (else the lifespan
    runs them); ``on_startup_failure`` is called when the background load fails (to stop
    the server); without it the app stays up and ``/health`` answers 503 ``failed``."""
    settings = settings or Settings()
    metrics_ = Metrics()
    state = ServiceState(settings, metrics_)

    # Keep uploads (capped at max_upload_bytes) in memory: photos never touch the disk.
    MultiPartParser.spool_max_size = max(
        MultiPartParser.spool_max_size, settings.max_upload_bytes + _MULTIPART_SLACK
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal checked
        try:
            startup = checked or preflight(settings)
        except StartupError as exc:
            log.critical("refusing to start: %s", exc)
            raise
        checked = None  # a later lifespan of this app (tests restart it) checks afresh

        async def load() -> None:
            try:
                state.set_ready(await build(settings, metrics_, startup, pipeline))
            except Exception as exc:
                state.failed = str(exc) if isinstance(exc, StartupError) else repr(exc)
                log.critical("startup failed: %s", state.failed, exc_info=exc)
                startup.store.close()
                raise

        loader = asyncio.create_task(load(), name="faceid-load")

        def _loaded(task: asyncio.Task[None]) -> None:
            if task.cancelled() or task.exception() is None:
                return
            if on_startup_failure is not None:
                on_startup_failure()

        loader.add_done_callback(_loaded)
        try:
            yield
        finally:
            if not loader.done():
                loader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await loader
            if state.ready:
                await state.close()
            else:
                startup.store.close()

    app = FastAPI(
        title="faceid",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        docs_url=None,  # /docs and /redoc come from install_docs, with local assets
        redoc_url=None,
    )
    app.state.faceid = state
    install_error_handlers(app)
    # Before any middleware that reads app.docs_url / app.redoc_url (install_docs sets them).
    install_docs(app)
    install_web(app)

    def enroll_files(scope: Scope) -> int:
        """Files allowed in the enrolment route's ``image`` field (1 elsewhere)."""
        path = scope.get("path", "").rstrip("/")
        enrolling = path.startswith("/identities/") and path.endswith("/faces")
        return settings.enroll_max_images if scope.get("method") == "POST" and enrolling else 1

    def body_limit(scope: Scope) -> int:
        images = 2 if scope.get("path", "").rstrip("/") == "/verify" else enroll_files(scope)
        return images * settings.max_upload_bytes + _MULTIPART_SLACK

    app.add_middleware(BodySizeLimitMiddleware, limit_for=body_limit)
    app.add_middleware(
        BodyGuardMiddleware,
        files_per_field=enroll_files,
        part_limit=settings.max_upload_bytes,
        idle_timeout_s=settings.body_idle_timeout_s,
        total_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(
        ApiKeyMiddleware,
        keys=settings.api_keys,
        public_paths=public_paths(app, settings),
        public_prefixes=public_prefixes(app),
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics_)

    protected = [Depends(require_api_key)]
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(identify.router, dependencies=protected)
    app.include_router(verify.router, dependencies=protected)
    app.include_router(embed.router, dependencies=protected)
    app.include_router(identities.router, dependencies=protected)
    install_openapi(app, settings)
    return app


def __getattr__(name: str) -> Any:
    """``app.main:app`` for ``uvicorn app.main:app``: built from the environment on first use."""
    if name == "app":
        from app.log import configure_logging

        settings = Settings()
        configure_logging(settings.log_level)

        def stop() -> None:  # the model failed to load: end this process, see the docstring
            stop_after_startup_failure(application.state.faceid.failed or "startup failed")

        application = create_app(settings, on_startup_failure=stop)
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
