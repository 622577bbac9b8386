"""The gallery: enroll faces under an identity, list, inspect, erase."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Path, Query, Response, UploadFile

from app.api.deps import CollectionName, DigitsOnly, Identity, Ready, read_upload
from app.errors import ApiError
from app.gallery.storage import DEFAULT_COLLECTION
from app.recognition import MatchPolicy, PhotoOutcome
from app.schemas import (
    EnrolledFace,
    EnrollPhoto,
    EnrollResponse,
    EnrollWarning,
    ErrorDetail,
    IdentityDetail,
    IdentityList,
    IdentitySummary,
    error_responses,
)

router = APIRouter(prefix="/identities", tags=["gallery"])

MAX_OFFSET = 1_000_000_000  # far past any gallery, far below SQLite's 64-bit integers


def _unknown(identity: str) -> ApiError:
    return ApiError("not_found", f"No identity named {identity!r} is enrolled.")


@router.post(
    "/{identity}/faces",
    status_code=201,
    response_model=EnrollResponse,
    summary="Enroll the largest face of one or several photos",
    responses=error_responses(400, 401, 413, 415, 422, 503),
)
async def enroll(
    recognizer: Ready,
    identity: Identity,
    collection: CollectionName,
    image: Annotated[
        list[UploadFile],
        File(
            description="A photo of this person; repeat the field for several photos (up to "
            "FACEID_ENROLL_MAX_IMAGES, default 10)."
        ),
    ],
    response: Response,
) -> EnrollResponse:
    """Stores the embedding of each photo's largest face (never the photo) under
    `identity`. Several photos per identity are allowed and all count in matching.

    One photo: 422 `no_face` when it has no face, 422 `low_quality` (saying why) when the
    face is under the enrolment quality floor, 400/413/415 when it is not a usable image.
    A face enrolled with a quality under `FACEID_ENROLL_QUALITY_WARNING` comes with a
    `low_quality` entry in `warnings` (and in its photo's `warnings`), saying why.
    Several photos: each part's outcome is in `photos`; 201 when at least one was enrolled
    (the others say why not), 422 `no_photo_enrolled` when none was. The enrolled faces are
    stored together: on 503 none is."""
    uploads = [await read_upload(part, recognizer) for part in image]
    outcomes = await recognizer.enroll_photos(identity, uploads, collection)
    if len(outcomes) == 1 and outcomes[0].error is not None:
        raise outcomes[0].error
    policy = recognizer.policy
    photos = [
        _photo(i, part.filename, o, policy)
        for i, (part, o) in enumerate(zip(image, outcomes, strict=True))
    ]
    enrolled = [o.enrolled for o in outcomes if o.enrolled is not None]
    if not enrolled:
        reasons = "; ".join(
            f"photo {p.index} ({p.filename or 'unnamed'}): {p.error.code}"
            for p in photos
            if p.error is not None
        )
        raise ApiError(
            "no_photo_enrolled", f"None of the {len(photos)} photos was enrolled: {reasons}."
        )
    first = enrolled[0]
    prefix = "" if collection == DEFAULT_COLLECTION else f"/collections/{collection}"
    response.headers["Location"] = f"{prefix}/identities/{quote(identity, safe='')}"
    return EnrollResponse(
        identity=first.enrollment.identity,
        face_id=first.enrollment.face_id,
        faces_detected=first.faces_detected,
        quality=round(first.face.quality.score, 4),
        enrolled=len(enrolled),
        photos=photos,
        warnings=[w for p in photos for w in p.warnings],
    )


def _photo(
    index: int, filename: str | None, outcome: PhotoOutcome, policy: MatchPolicy
) -> EnrollPhoto:
    if outcome.enrolled is None:
        assert outcome.error is not None
        error = ErrorDetail(code=outcome.error.code, message=outcome.error.message)
        return EnrollPhoto(index=index, filename=filename, enrolled=False, error=error)
    done = outcome.enrolled
    return EnrollPhoto(
        index=index,
        filename=filename,
        enrolled=True,
        face_id=done.enrollment.face_id,
        faces_detected=done.faces_detected,
        quality=round(done.face.quality.score, 4),
        warnings=[
            EnrollWarning(code=w.code, message=w.message, photo=index)
            for w in policy.enrollment_warnings(done.face)
        ],
    )


@router.get(
    "",
    response_model=IdentityList,
    summary="List enrolled identities",
    responses=error_responses(401, 422, 503),
)
async def list_identities(
    recognizer: Ready,
    collection: CollectionName,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size."), DigitsOnly] = 100,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Identities to skip."), DigitsOnly
    ] = 0,
) -> IdentityList:
    """Identities in name order with their number of faces, and the total count."""
    page, total = await recognizer.run_db(
        recognizer.gallery.list_identities, limit, offset, collection
    )
    return IdentityList(
        identities=[IdentitySummary(identity=i, faces=n) for i, n in page], total=total
    )


@router.get(
    "/{identity}",
    response_model=IdentityDetail,
    summary="Faces enrolled under an identity",
    responses=error_responses(401, 404, 422, 503),
)
async def get_identity(
    recognizer: Ready, identity: Identity, collection: CollectionName
) -> IdentityDetail:
    """Face ids with their enrollment times and the model that made them."""
    faces = await recognizer.run_db(recognizer.gallery.faces_of, identity, collection)
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
async def delete_identity(
    recognizer: Ready, identity: Identity, collection: CollectionName
) -> Response:
    """Erases every stored embedding of this person (right to erasure)."""
    deleted = await recognizer.run_db(recognizer.gallery.delete_identity, identity, collection)
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
    collection: CollectionName,
    face_id: Annotated[str, Path(min_length=1, max_length=64, description="A face id.")],
) -> Response:
    """Erases one face of the identity; 404 when the identity has no such face."""
    deleted = await recognizer.run_db(recognizer.gallery.delete_face, identity, face_id, collection)
    if not deleted:
        raise ApiError("not_found", f"Identity {identity!r} has no face with id {face_id!r}.")
    return Response(status_code=204)
