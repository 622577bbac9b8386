"""The application factory and its lifespan.

``create_app(settings)`` builds the FastAPI app in named steps (error handlers, docs, web
page, guards, routes, OpenAPI). Its ``lifespan`` runs the fast startup checks (model
card, preprocessing version, gallery model version: a mismatch stops the process with a
clear message), then loads and warms up the model, the face detector and the gallery
index in the background while ``/health`` answers 503 ``starting``.

``uvicorn app.main:app`` works too: ``app`` is created on first access with settings
from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI
from starlette.formparsers import MultiPartParser

from app.api import (
    audit,
    collections,
    compreface,
    corrections,
    deepstack,
    embed,
    health,
    identify,
    identities,
    metrics,
    verify,
)
from app.api.deps import collection_path
from app.api.docs import install_docs
from app.api.web import install_web
from app.domain_errors import StartupError, StorageUnavailable
from app.errors import install_error_handlers
from app.guards import AccessMiddleware, BodyGuardMiddleware
from app.metrics import Metrics
from app.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.openapi import install_openapi, operation_id
from app.route_policy import COLLECTION_PREFIX, MULTIPART_SLACK, RouteTable
from app.server import stop_after_startup_failure
from app.settings import Settings
from app.state import Preflight, ServiceState, build, preflight
from faces import FacePipeline

log = logging.getLogger("faceid.main")

API_VERSION = "1.0.0"

DESCRIPTION = """
Face identification over HTTP. Enroll people with a photo or more, then ask who is in a
new photo. Only embeddings and metadata are stored, never photos; `DELETE
/identities/{identity}` erases a person.

Errors always come as `{"error": {"code": ..., "message": ...}}`. When API keys are
configured, send `Authorization: Bearer <key>` on every path but `/health` and `/metrics`
(these documentation pages included, unless `FACEID_DOCS_PUBLIC=true`).
"""


@dataclass
class _Startup:
    """What ``create_app`` hands its lifespan: the startup checks already run (if any),
    the shared face pipeline (tests) and what to do when loading fails."""

    checked: Preflight | None
    pipeline: FacePipeline | None
    on_failure: Callable[[], None] | None


async def _load(state: ServiceState, checked: Preflight, pipeline: FacePipeline | None) -> None:
    """Build the components in the background and swap them in; record a failure."""
    try:
        state.set_ready(
            await build(state.settings, state.metrics, checked, pipeline, state.keyring)
        )
    except Exception as exc:
        state.failed = str(exc) if isinstance(exc, StartupError) else repr(exc)
        log.critical("startup failed: %s", state.failed, exc_info=exc)
        checked.store.close()
        raise


def _start_loading(
    state: ServiceState, checked: Preflight, startup: _Startup
) -> asyncio.Task[None]:
    """The background load; when it fails, ``startup.on_failure`` (stop the server)."""
    loader = asyncio.create_task(_load(state, checked, startup.pipeline), name="faceid-load")

    def loaded(task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        if startup.on_failure is not None:
            startup.on_failure()

    loader.add_done_callback(loaded)
    return loader


async def _stop(state: ServiceState, checked: Preflight, loader: asyncio.Task[None]) -> None:
    """Cancel a load still running, then close what was opened."""
    if not loader.done():
        loader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await loader
    if state.ready:
        await state.close()
    else:
        checked.store.close()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the fast startup checks (a failure stops the process), load the model and the
    gallery in the background while ``/health`` answers 503, close everything at the end."""
    state: ServiceState = app.state.faceid
    startup: _Startup = app.state.faceid_startup
    try:
        checked = startup.checked or preflight(state.settings)
    except StartupError as exc:
        log.critical("refusing to start: %s", exc)
        raise
    startup.checked = None  # a later lifespan of this app (tests restart it) checks afresh
    try:
        state.keyring.load(checked.store.api_keys())  # keys hold before the first request
    except StorageUnavailable as exc:
        checked.store.close()
        raise StartupError(f"Cannot read the API keys from the gallery database: {exc}") from exc
    loader = _start_loading(state, checked, startup)
    try:
        yield
    finally:
        await _stop(state, checked, loader)


def keep_uploads_in_memory(settings: Settings) -> None:
    """Let Starlette's multipart parser hold an upload of up to ``max_upload_bytes`` in
    memory, so photos never touch the disk. The setting is process-wide (a class
    attribute of Starlette's parser): it only ever grows, so apps with different caps in
    one process (tests) each keep theirs in memory."""
    MultiPartParser.spool_max_size = max(
        MultiPartParser.spool_max_size, settings.max_upload_bytes + MULTIPART_SLACK
    )


def add_guards(app: FastAPI, settings: Settings, metrics_: Metrics) -> None:
    """The middleware stack, outermost last: request context, access (the key, its role
    and collections, from the headers before the body), body stream guard (per-part caps,
    stalls), body size cap. Public routes, roles and body limits come from
    ``app.route_policy.ROUTES``."""
    routes = RouteTable(app, settings)
    state: ServiceState = app.state.faceid
    app.add_middleware(BodySizeLimitMiddleware, limit_for=routes.body_limit)
    app.add_middleware(
        BodyGuardMiddleware,
        files_per_field=routes.files_per_field,
        part_limit=settings.max_upload_bytes,
        idle_timeout_s=settings.body_idle_timeout_s,
        total_timeout_s=settings.body_timeout_s,
    )
    app.add_middleware(
        AccessMiddleware,
        keyring=lambda: state.keyring,
        routes=routes,
        idle_timeout_s=settings.body_idle_timeout_s,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics_)


def add_routes(app: FastAPI) -> None:
    """The API's resources (the access guard protects all but the public ones). The
    gallery routes also exist under ``/collections/{collection}``."""
    for module in (
        health,
        metrics,
        identify,
        verify,
        embed,
        identities,
        corrections,
        collections,
        audit,
    ):
        app.include_router(module.router)
    for module in (identify, identities, corrections, audit):
        app.include_router(
            module.router,
            prefix=COLLECTION_PREFIX,
            dependencies=[Depends(collection_path)],
            tags=["collections"],
        )
    # The dialects (README: Use it from Double Take, Home Assistant or a CompreFace SDK)
    app.include_router(compreface.router)
    app.include_router(deepstack.router)


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
    keep_uploads_in_memory(settings)
    app = FastAPI(
        title="faceid",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        docs_url=None,  # /docs and /redoc come from install_docs, with local assets
        redoc_url=None,
    )
    app.state.faceid = ServiceState(settings, metrics_)
    app.state.faceid_startup = _Startup(checked, pipeline, on_startup_failure)
    install_error_handlers(app)
    install_docs(app)
    install_web(app)
    add_guards(app, settings, metrics_)
    add_routes(app)
    install_openapi(app, settings)
    return app


def __getattr__(name: str) -> Any:
    """``app.main:app`` for ``uvicorn app.main:app``: built from the environment on first use."""
    if name == "app":
        from app.log import configure_logging
        from app.supervisor import watch_supervisor

        settings = Settings()
        configure_logging(settings.log_level)
        watch_supervisor()  # a FACEID_WORKERS worker ends when its supervisor dies

        def stop() -> None:  # the model failed to load: end this process, see the docstring
            stop_after_startup_failure(application.state.faceid.failed or "startup failed")

        application = create_app(settings, on_startup_failure=stop)
        globals()["app"] = application
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
