"""POST /identify: who is in this photo?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from app.api.deps import CollectionName, DigitsOnly, Ready, face_fields, read_upload, threshold_info
from app.api.identities import metadata_model
from app.gallery.storage.base import IdentityMeta
from app.schemas import Candidate, IdentifiedFace, IdentifyResponse, error_responses

router = APIRouter(tags=["recognition"])


@router.post(
    "/identify",
    response_model=IdentifyResponse,
    summary="Identify every face in a photo",
    responses=error_responses(400, 401, 413, 415, 422, 503),
)
async def identify(
    recognizer: Ready,
    collection: CollectionName,
    image: Annotated[UploadFile, File(description="JPEG, PNG, WebP, BMP or PGM/PPM photo.")],
    top_k: Annotated[
        int, Query(ge=1, le=100, description="Candidates per face, best first."), DigitsOnly
    ] = 1,
    threshold: Annotated[
        float | None,
        Query(
            ge=-1.0,
            le=1.0,
            description="Cosine threshold for this request; default: the one calibrated "
            "for the gallery's size (FACEID_TARGET_FPIR), or FACEID_THRESHOLD.",
        ),
    ] = None,
    max_faces: Annotated[
        int | None,
        Query(ge=1, le=100, description="Largest faces to consider; default: FACEID_MAX_FACES."),
        DigitsOnly,
    ] = None,
    with_metadata: Annotated[
        bool,
        Query(
            description="Also return each named identity's metadata (one gallery database "
            "read; without it, identification never waits for the database)."
        ),
    ] = False,
) -> IdentifyResponse:
    """Detects every face (largest first), embeds them and matches each against the gallery.

    A face is named only when its best score reaches the threshold in force (reported in
    `threshold`) and its quality reaches the probe floor; otherwise `identity` is null and
    `reason` says why. A photo without a face gives `"faces": []`.
    """
    data = await read_upload(image, recognizer)
    result = await recognizer.identify(data, top_k, threshold, max_faces, collection)
    in_force = result.threshold
    meta: dict[str, IdentityMeta] = {}
    named = [f.decision.identity for f in result.faces if f.decision.identity is not None]
    if with_metadata and named:
        meta = await recognizer.run_db(recognizer.gallery.metadata_of, named, collection)
    return IdentifyResponse(
        faces=[
            IdentifiedFace(
                **face_fields(f.face),  # type: ignore[arg-type]
                identity=f.decision.identity,
                reason=f.decision.reason if f.decision.identity is None else None,  # type: ignore[arg-type]
                score=f.decision.score,
                metadata=metadata_model(meta.get(f.decision.identity or "")),
                candidates=[Candidate(identity=i, score=s) for i, s in f.candidates],
            )
            for f in result.faces
        ],
        threshold=threshold_info(in_force),
        model_version=recognizer.model_version,
    )
