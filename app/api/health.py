"""GET /health: readiness, model and gallery summary. Never needs a key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app.api.audit import population_info
from app.api.deps import get_state, threshold_info
from app.guards import PRINCIPAL
from app.schemas import (
    CollectionSummary,
    GalleryInfo,
    HealthResponse,
    ModelInfo,
    QualityFloors,
    StartingResponse,
)
from app.state import ServiceState

router = APIRouter(tags=["health"])

MAX_HEALTH_COLLECTIONS = 100


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Readiness and what is loaded",
    responses={503: {"model": StartingResponse, "description": "Still loading (or failed)."}},
)
async def health(
    state: Annotated[ServiceState, Depends(get_state)],
    request: Request,
) -> HealthResponse | JSONResponse:
    """200 once the model is loaded and warmed up; 503 `{"status": "starting"}` before.
    Reports the /identify threshold in force (of the `default` collection) and the gallery
    size it was computed for; `status` is `degraded` while the gallery database is
    unreachable. `gallery` counts every collection; `collections` lists those the key
    opens (none without a key when keys are configured). `population`: whether the
    target FPIR holds on the default collection's enrolled people (checked in the
    background after the gallery changes)."""
    components = state.components
    if components is None:
        status = "failed" if state.failed else "starting"
        return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": "2"})
    card, recognizer = components.card, components.recognizer
    in_force = recognizer.threshold()
    gallery = components.gallery
    sizes = gallery.collection_sizes()
    principal = request.scope.get(PRINCIPAL)
    return HealthResponse(
        status="ok" if gallery.storage_ok else "degraded",
        model=ModelInfo(
            name=card.name,
            version=card.version,
            embedding_dim=card.embedding_dim,
            threshold=recognizer.policy.verify_threshold,
            engine=components.model.engine,
        ),
        gallery=GalleryInfo(
            identities=gallery.identities,
            faces=gallery.faces,
            storage="postgresql" if gallery.store.engine == "postgresql" else "sqlite",
            change_seq=gallery.change_seq,
        ),
        identification=threshold_info(in_force),
        quality_floors=QualityFloors(
            probe=recognizer.policy.probe_quality_floor,
            enroll=recognizer.policy.enroll_quality_floor,
            enroll_warning=recognizer.policy.enroll_quality_warning,
        ),
        collections=[
            CollectionSummary(name=s.name, identities=s.identities, faces=s.faces)
            for s in sizes
            if principal is not None and principal.can_use(s.name)
        ][:MAX_HEALTH_COLLECTIONS],
        collections_total=len(sizes),
        population=population_info(
            components.monitor.result() if components.monitor is not None else None
        ),
    )
