"""Corrections of the gallery: rename or merge an identity, move one face to another
identity, set an identity's metadata. Each is one transaction through the change log
(every process follows it) that keeps face ids, enrolment times and content hashes; a
refused correction changes nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api.deps import CollectionName, Identity, Ready
from app.api.identities import identity_detail
from app.domain_errors import UnknownIdentity
from app.gallery.metadata import checked_metadata
from app.gallery.names import validate_identity
from app.schemas import (
    IdentityDetail,
    IdentityMetadata,
    MergeRequest,
    MoveFaceRequest,
    RenameRequest,
    error_responses,
)

router = APIRouter(prefix="/identities", tags=["gallery"])


@router.post(
    "/{identity}/rename",
    response_model=IdentityDetail,
    summary="Rename an identity",
    responses=error_responses(401, 404, 409, 422, 503),
)
async def rename_identity(
    recognizer: Ready, identity: Identity, collection: CollectionName, body: RenameRequest
) -> IdentityDetail:
    """Gives every face of `identity` (and its metadata) the new `name`. 409
    `identity_exists` when that name is enrolled already (merge instead), 422
    `same_identity` when it is the same name."""
    target = validate_identity(body.name)
    await recognizer.run_db(
        recognizer.gallery.move_identity, identity, target, collection, "rename"
    )
    return await identity_detail(recognizer, target, collection)


@router.post(
    "/{identity}/merge",
    response_model=IdentityDetail,
    summary="Merge an identity into another",
    responses=error_responses(401, 404, 422, 503),
)
async def merge_identity(
    recognizer: Ready, identity: Identity, collection: CollectionName, body: MergeRequest
) -> IdentityDetail:
    """Moves every face of `identity` to the enrolled identity `into` (the same person
    enrolled under two names); `identity` is gone afterwards. `into` keeps its metadata
    (or takes `identity`'s when it has none). 404 when either is not enrolled, 422
    `same_identity` when they are the same."""
    target = validate_identity(body.into)
    await recognizer.run_db(recognizer.gallery.move_identity, identity, target, collection, "merge")
    return await identity_detail(recognizer, target, collection)


@router.post(
    "/{identity}/faces/{face_id}/move",
    response_model=IdentityDetail,
    summary="Move one face to another identity",
    responses=error_responses(401, 404, 422, 503),
)
async def move_face(
    recognizer: Ready,
    identity: Identity,
    collection: CollectionName,
    face_id: Annotated[str, Path(min_length=1, max_length=64, description="A face id.")],
    body: MoveFaceRequest,
) -> IdentityDetail:
    """Files one face of `identity` (a photo filed under the wrong person) under `to`,
    enrolled or new, keeping its id, enrolment time and content hash. 404 when `identity`
    has no such face, 422 `same_identity` when `to` is `identity`. Answers `to`'s faces."""
    target = validate_identity(body.to)
    moved = await recognizer.run_db(
        recognizer.gallery.move_face, identity, face_id, target, collection
    )
    if moved is None:
        raise UnknownIdentity(f"Identity {identity!r} has no face with id {face_id!r}.")
    return await identity_detail(recognizer, target, collection)


@router.put(
    "/{identity}/metadata",
    response_model=IdentityDetail,
    summary="Set an identity's metadata",
    responses=error_responses(401, 404, 413, 422, 503),
)
async def set_metadata(
    recognizer: Ready, identity: Identity, collection: CollectionName, body: IdentityMetadata
) -> IdentityDetail:
    """Replaces the identity's metadata: an `external_id` (another system's key for the
    person) and a small JSON object `data`; both null erase it. 413 `metadata_too_large`
    past 256 characters of `external_id` or 4096 bytes of `data`. The metadata is returned
    with the identity (listings, `GET /identities/{identity}`, `/identify` with
    `with_metadata=true`) and erased with its last face."""
    meta = checked_metadata(body.external_id, body.data)
    done = await recognizer.run_db(recognizer.gallery.set_metadata, identity, meta, collection)
    if not done:
        raise UnknownIdentity(f"No identity named {identity!r} is enrolled.")
    return await identity_detail(recognizer, identity, collection)
