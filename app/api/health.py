"""GET /health: readiness, model and gallery summary. Never needs a key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app.api.deps import get_state, threshold_info
from app.schemas import (
    GalleryInfo,
    HealthResponse,
    ModelInfo,
    QualityFloors,
    StartingResponse,
)
from app.state import ServiceState

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Readiness and what is loaded",
    responses={503: {"model": StartingResponse, "description": "Still loading (or failed)."}},
)
async def health(
    state: Annotated[ServiceState, Depends(get_state)],
) -> HealthResponse | JSONResponse:
    """200 once the model is loaded and warmed up; 503 `{"status": "starting"}` before.
    Reports the /identify threshold in force and the gallery size it was computed for;
    `status` is `degraded` while the gallery database is unreachable."""
    components = state.components
    if components is None:
        status = "failed" if state.failed else "starting"
        return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": "2"})
    card, recognizer = components.card, components.recognizer
    in_force = recognizer.threshold()
    gallery = components.gallery
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
            identities=in_force.identities,
            faces=in_force.faces,
            storage="postgresql" if gallery.store.engine == "postgresql" else "sqlite",
            change_seq=gallery.change_seq,
        ),
        identification=threshold_info(in_force),
        quality_floors=QualityFloors(
            probe=recognizer.policy.probe_quality_floor,
            enroll=recognizer.policy.enroll_quality_floor,
        ),
    )
