"""GET /collections: the galleries this key opens, with their sizes and thresholds."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import Caller, Ready, threshold_info
from app.schemas import CollectionInfo, CollectionList, error_responses

router = APIRouter(tags=["collections"])

#: At most this many collections are listed (the total is always given).
MAX_LISTED = 1000


@router.get(
    "/collections",
    response_model=CollectionList,
    summary="Collections this key opens",
    responses=error_responses(401, 503),
)
async def list_collections(recognizer: Ready, caller: Caller) -> CollectionList:
    """Every collection that holds a face (and `default`) that the key may use, by name,
    with its size and the /identify threshold calibrated for that size. A collection
    comes into being with its first enrolment (`POST /collections/{collection}/identities/
    {identity}/faces`); one whose faces are all erased is no longer listed."""
    visible = [size for size in recognizer.gallery.collection_sizes() if caller.can_use(size.name)]
    return CollectionList(
        collections=[
            CollectionInfo(
                name=size.name,
                identities=size.identities,
                faces=size.faces,
                identification=threshold_info(recognizer.threshold(None, size.name)),
            )
            for size in visible[:MAX_LISTED]
        ],
        total=len(visible),
    )
