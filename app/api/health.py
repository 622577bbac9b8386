"""GET /health: readiness, model and gallery summary. Never needs a key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from app.api.deps import get_state
from app.schemas import GalleryInfo, HealthResponse, ModelInfo, StartingResponse
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
    """200 once the model is loaded and warmed up; 503 `{"status": "starting"}` before."""
    if not state.ready or state.card is None or state.gallery is None or state.model is None:
        status = "failed" if state.failed else "starting"
        return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": "2"})
    card = state.card
    return HealthResponse(
        model=ModelInfo(
            name=card.name,
            version=card.version,
            embedding_dim=card.embedding_dim,
            threshold=state.threshold,
            engine=state.model.engine,
        ),
        gallery=GalleryInfo(identities=state.gallery.identities, faces=state.gallery.faces),
    )
