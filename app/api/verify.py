"""POST /verify: are these two photos of the same person?"""

from __future__ import annotations

import asyncio
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, UploadFile

from app.api.deps import Ready, read_upload
from app.errors import ApiError
from app.schemas import VerifyResponse, error_responses

router = APIRouter(tags=["recognition"])


@router.post(
    "/verify",
    response_model=VerifyResponse,
    summary="Compare the largest faces of two photos",
    responses=error_responses(400, 401, 413, 415, 422, 503),
)
async def verify(
    state: Ready,
    image_a: Annotated[UploadFile, File(description="First photo.")],
    image_b: Annotated[UploadFile, File(description="Second photo.")],
) -> VerifyResponse:
    """`same_person` is true when the cosine similarity reaches the model's threshold.
    422 `no_face` when either photo has no face."""
    data_a = await read_upload(image_a, state, "image_a")
    data_b = await read_upload(image_b, state, "image_b")
    faces_a, faces_b = await asyncio.gather(state.faces(data_a, 1), state.faces(data_b, 1))
    for field, faces in (("image_a", faces_a), ("image_b", faces_b)):
        state.metrics.faces_per_request.labels("/verify").observe(len(faces))
        if not faces:
            raise ApiError(422, "no_face", f"No face was found in '{field}'.")
    embeddings = await state.embed([faces_a[0], faces_b[0]])
    score = float(np.dot(embeddings[0], embeddings[1]))
    threshold = state.threshold
    return VerifyResponse(same_person=score >= threshold, score=score, threshold=threshold)
