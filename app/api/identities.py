"""The gallery: enroll faces under an identity, list, inspect, erase."""

from __future__ import annotations

import math
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, File, Path, Query, Response, UploadFile

from app.api.deps import CollectionName, DigitsOnly, Identity, Ready, read_upload
from app.errors import ApiError
from app.gallery.storage import DEFAULT_COLLECTION
from app.gallery.storage.base import IdentityMeta
from app.recognition import FaceChoice, MatchPolicy, PhotoOutcome, Recognizer
from app.schemas import (
    EnrolledFace,
    EnrollPhoto,
    EnrollResponse,
    EnrollWarning,
    ErrorDetail,
    IdentityDetail,
    IdentityList,
    IdentityMetadata,
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
    summary="Enroll the largest (or a chosen) face of one or several photos",
    responses=error_responses(400, 401, 404, 413, 415, 422, 503),
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
    face_index: Annotated[
        int | None,
        Query(
            ge=0,
            le=99,
            description="Enrol this face of the photo instead of the largest: its position "
            "in the photo's faces as /identify lists them (0: the largest). One photo only.",
        ),
        DigitsOnly,
    ] = None,
    box: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Enrol the face whose box overlaps this one (x1,y1,x2,y2 in pixels, "
            "e.g. copied from /identify) by at least half. One photo only.",
            examples=["61.3,52.9,186.4,204.1"],
        ),
    ] = None,
    replaces: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="A face id of this identity that the new face takes the place of, "
            "in the same transaction (a wrong face of a photo swapped for the right one). "
            "One photo only; 404 when the identity has no such face (nothing is stored).",
        ),
    ] = None,
) -> EnrollResponse:
    """Stores the embedding of each photo's largest face (never the photo) under
    `identity`. Several photos per identity are allowed and all count in matching.
    `face_index` or `box` choose another face of a single photo (422 `no_such_face` when
    the photo has no such face).

    A face that already matches another identity above the threshold in force is enrolled
    all the same, and `warnings` names that identity and the score.

    One photo: 422 `no_face` when it has no face, 422 `low_quality` (saying why) when the
    face is under the enrolment quality floor, 400/413/415 when it is not a usable image.
    A face enrolled with a quality under `FACEID_ENROLL_QUALITY_WARNING` comes with a
    `low_quality` entry in `warnings` (and in its photo's `warnings`), saying why.
    Several photos: each part's outcome is in `photos`; 201 when at least one was enrolled
    (the others say why not), 422 `no_photo_enrolled` when none was. The enrolled faces are
    stored together: on 503 none is."""
    choice = _face_choice(face_index, box, len(image))
    if replaces is not None and len(image) != 1:
        raise ApiError("validation_error", f"replaces takes one photo; got {len(image)}.")
    uploads = [await read_upload(part, recognizer) for part in image]
    result = await recognizer.enroll_chosen(identity, uploads, collection, choice, replaces)
    outcomes = result.photos
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
        warnings=[w for p in photos for w in p.warnings]
        + [
            EnrollWarning(
                code="matches_other_identity",
                photo=w.photo,
                face_id=w.face_id,
                identity=w.identity,
                score=round(w.score, 4),
                threshold=round(w.threshold, 4),
                message=f"The face of photo {w.photo} also matches {w.identity!r} "
                f"(score {w.score:.3f} ≥ threshold {w.threshold:.3f}): the same person under "
                "two names, or a photo of someone else? Enrolled all the same.",
            )
            for w in result.lookalikes
        ],
    )


def _face_choice(face_index: int | None, box: str | None, photos: int) -> FaceChoice | None:
    """The face the request chose (None: the largest), or 422 ``validation_error``."""
    if face_index is None and box is None:
        return None
    if face_index is not None and box is not None:
        raise ApiError("validation_error", "Give face_index or box, not both.")
    if photos != 1:
        raise ApiError(
            "validation_error", f"face_index and box choose a face of one photo; got {photos}."
        )
    if box is None:
        return FaceChoice(index=face_index)
    try:
        values = [float(v) for v in box.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ApiError("validation_error", "box must be four numbers: x1,y1,x2,y2.")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise ApiError("validation_error", "box must have x2 > x1 and y2 > y1.")
    return FaceChoice(box=(x1, y1, x2, y2))


def metadata_model(meta: IdentityMeta | None) -> IdentityMetadata | None:
    """An identity's stored metadata as the API returns it (None: none set)."""
    if meta is None:
        return None
    return IdentityMetadata(external_id=meta.external_id, data=meta.data)


async def identity_detail(recognizer: Recognizer, identity: str, collection: str) -> IdentityDetail:
    """An enrolled identity's faces and metadata (404 ``not_found`` when it has none)."""
    gallery = recognizer.gallery
    faces = await recognizer.run_db(gallery.faces_of, identity, collection)
    if not faces:
        raise _unknown(identity)
    meta = await recognizer.run_db(gallery.metadata_of, [identity], collection)
    return IdentityDetail(
        identity=identity,
        faces=[
            EnrolledFace(face_id=f.face_id, created_at=f.created_at, model_version=f.model_version)
            for f in faces
        ],
        metadata=metadata_model(meta.get(identity)),
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
    gallery = recognizer.gallery
    page, total = await recognizer.run_db(gallery.list_identities, limit, offset, collection)
    meta = await recognizer.run_db(gallery.metadata_of, [i for i, _ in page], collection)
    return IdentityList(
        identities=[
            IdentitySummary(identity=i, faces=n, metadata=metadata_model(meta.get(i)))
            for i, n in page
        ],
        total=total,
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
    """Face ids with their enrollment times and the model that made them, and the
    identity's metadata."""
    return await identity_detail(recognizer, identity, collection)


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
