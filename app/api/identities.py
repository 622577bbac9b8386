"""The gallery: enroll faces under an identity, list, inspect, erase."""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Path, Query, Response, UploadFile

from app.api.deps import Identity, Ready, read_upload
from app.errors import ApiError
from app.schemas import (
    EnrolledFace,
    EnrollResponse,
    IdentityDetail,
    IdentityList,
    IdentitySummary,
    error_responses,
)

router = APIRouter(prefix="/identities", tags=["gallery"])

MAX_OFFSET = 1_000_000_000  # far past any gallery, far below SQLite's 64-bit integers


def _unknown(identity: str) -> ApiError:
    return ApiError(404, "not_found", f"No identity named {identity!r} is enrolled.")


@router.post(
    "/{identity}/faces",
    status_code=201,
    response_model=EnrollResponse,
    summary="Enroll the largest face of a photo",
    responses=error_responses(400, 401, 413, 415, 422, 503),
)
async def enroll(
    recognizer: Ready,
    identity: Identity,
    image: Annotated[UploadFile, File(description="A photo of this person.")],
    response: Response,
) -> EnrollResponse:
    """Stores the embedding of the photo's largest face (never the photo) under `identity`.
    Several photos per identity are allowed and all count in matching. 422 `no_face` when
    the photo has no face, 422 `low_quality` (saying why) when the face is under the
    enrolment quality floor."""
    data = await read_upload(image, recognizer)
    result = await recognizer.enroll(identity, data)
    response.headers["Location"] = f"/identities/{quote(identity, safe='')}"
    return EnrollResponse(
        identity=result.enrollment.identity,
        face_id=result.enrollment.face_id,
        faces_detected=result.faces_detected,
        quality=round(result.face.quality.score, 4),
    )


@router.get(
    "",
    response_model=IdentityList,
    summary="List enrolled identities",
    responses=error_responses(401, 422, 503),
)
async def list_identities(
    recognizer: Ready,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Identities to skip.")] = 0,
) -> IdentityList:
    """Identities in name order with their number of faces, and the total count."""
    page, total = await asyncio.to_thread(recognizer.gallery.list_identities, limit, offset)
    return IdentityList(
        identities=[IdentitySummary(identity=i, faces=n) for i, n in page], total=total
    )


@router.get(
    "/{identity}",
    response_model=IdentityDetail,
    summary="Faces enrolled under an identity",
    responses=error_responses(401, 404, 422, 503),
)
async def get_identity(recognizer: Ready, identity: Identity) -> IdentityDetail:
    """Face ids with their enrollment times and the model that made them."""
    faces = await asyncio.to_thread(recognizer.gallery.faces_of, identity)
    if not faces:
        raise _unknown(identity)
    return IdentityDetail(
        identity=identity,
        faces=[
            EnrolledFace(face_id=f.face_id, created_at=f.created_at, model_version=f.model_version)
            for f in faces
        ],
    )


@router.delete(
    "/{identity}",
    status_code=204,
    response_class=Response,
    summary="Erase an identity",
    responses=error_responses(401, 404, 422, 503),
)
async def delete_identity(recognizer: Ready, identity: Identity) -> Response:
    """Erases every stored embedding of this person (right to erasure)."""
    deleted = await asyncio.to_thread(recognizer.gallery.delete_identity, identity)
    if not deleted:
        raise _unknown(identity)
    return Response(status_code=204)


@router.delete(
    "/{identity}/faces/{face_id}",
    status_code=204,
    response_class=Response,
    summary="Erase one enrolled face",
    responses=error_responses(401, 404, 422, 503),
)
async def delete_face(
    recognizer: Ready,
    identity: Identity,
    face_id: Annotated[str, Path(min_length=1, max_length=64, description="A face id.")],
) -> Response:
    """Erases one face of the identity; 404 when the identity has no such face."""
    deleted = await asyncio.to_thread(recognizer.gallery.delete_face, identity, face_id)
    if not deleted:
        raise ApiError(404, "not_found", f"Identity {identity!r} has no face with id {face_id!r}.")
    return Response(status_code=204)
