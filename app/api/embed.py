"""POST /embed: raw embeddings, for clients that keep their own vector store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from app.api.deps import DigitsOnly, Ready, face_fields, read_upload
from app.schemas import EmbeddedFace, EmbedResponse, error_responses

router = APIRouter(tags=["recognition"])


@router.post(
    "/embed",
    response_model=EmbedResponse,
    summary="Embeddings of every face in a photo",
    responses=error_responses(400, 401, 413, 415, 422, 503),
)
async def embed(
    recognizer: Ready,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP or PGM/PPM photo.")],
    max_faces: Annotated[
        int | None,
        Query(ge=1, le=100, description="Largest faces to embed; default: FACEID_MAX_FACES."),
        DigitsOnly,
    ] = None,
) -> EmbedResponse:
    """Every face, largest first, with its L2-normalised embedding (cosine = dot product)."""
    data = await read_upload(image, recognizer)
    faces = await recognizer.detect_and_embed(data, max_faces)
    return EmbedResponse(
        faces=[
            EmbeddedFace(**face_fields(f.face), embedding=f.embedding.tolist())  # type: ignore[arg-type]
            for f in faces
        ],
        model_version=recognizer.model_version,
    )
