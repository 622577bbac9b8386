"""POST /identify: who is in this photo?"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from app.api.deps import Ready, face_fields, read_upload
from app.schemas import Candidate, IdentifiedFace, IdentifyResponse, error_responses

router = APIRouter(tags=["recognition"])


@router.post(
    "/identify",
    response_model=IdentifyResponse,
    summary="Identify every face in a photo",
    responses=error_responses(400, 401, 413, 415, 422, 503),
)
async def identify(
    state: Ready,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP or PGM/PPM photo.")],
    top_k: Annotated[int, Query(ge=1, le=100, description="Candidates per face, best first.")] = 1,
    threshold: Annotated[
        float | None,
        Query(ge=-1.0, le=1.0, description="Cosine threshold; default: the model's."),
    ] = None,
    max_faces: Annotated[
        int | None,
        Query(ge=1, le=100, description="Largest faces to consider; default: FACEID_MAX_FACES."),
    ] = None,
) -> IdentifyResponse:
    """Detects every face (largest first), embeds them and matches each against the gallery.

    A face whose best score is under the threshold has `identity: null` (unknown); a photo
    without a face gives `"faces": []`.
    """
    data = await read_upload(image, state)
    faces = await state.faces(data, max_faces or state.settings.max_faces)
    state.metrics.faces_per_request.labels("/identify").observe(len(faces))
    if not faces:
        return IdentifyResponse(faces=[], model_version=state.model_version)
    embeddings = await state.embed(faces)
    assert state.gallery is not None
    matches = await asyncio.to_thread(state.gallery.search, embeddings, top_k)
    cutoff = state.threshold if threshold is None else threshold
    results = []
    for face, candidates in zip(faces, matches, strict=True):
        best = candidates[0] if candidates else None
        known = best is not None and best[1] >= cutoff
        results.append(
            IdentifiedFace(
                **face_fields(face),  # type: ignore[arg-type]
                identity=best[0] if known and best else None,
                score=best[1] if best else None,
                candidates=[Candidate(identity=i, score=s) for i, s in candidates],
            )
        )
    return IdentifyResponse(faces=results, model_version=state.model_version)
