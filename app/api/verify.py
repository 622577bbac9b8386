"""POST /verify: are these two photos of the same person?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile

from app.api.deps import Ready, read_upload
from app.schemas import VerifyResponse, error_responses

router = APIRouter(tags=["recognition"])


@router.post(
    "/verify",
    response_model=VerifyResponse,
    summary="Compare the largest faces of two photos",
    responses=error_responses(400, 401, 413, 415, 422, 503),
)
async def verify(
    recognizer: Ready,
    image_a: Annotated[UploadFile, File(description="First photo.")],
    image_b: Annotated[UploadFile, File(description="Second photo.")],
) -> VerifyResponse:
    """`same_person` is true when the cosine similarity reaches the pair threshold (the
    model card's, or FACEID_THRESHOLD). 422 `no_face` when either photo has no face."""
    data_a = await read_upload(image_a, recognizer, "image_a")
    data_b = await read_upload(image_b, recognizer, "image_b")
    result = await recognizer.verify(data_a, data_b)
    return VerifyResponse(
        same_person=result.same_person, score=result.score, threshold=result.threshold
    )
