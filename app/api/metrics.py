"""GET /metrics: Prometheus text exposition. Never needs a key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import get_state
from app.state import ServiceState

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
async def metrics(state: Annotated[ServiceState, Depends(get_state)]) -> Response:
    """Requests and latency per route and status, faces per request, model batch sizes
    and inference time, gallery size."""
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
