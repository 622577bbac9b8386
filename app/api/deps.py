"""Dependencies shared by the routes: readiness, uploads, identity names (API keys are
checked once, before them, by ``app.guards.ApiKeyMiddleware``)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path, Request, UploadFile
from pydantic import BeforeValidator

from app.errors import ApiError
from app.gallery.names import IDENTITY_RULE, validate_collection, validate_identity
from app.gallery.storage import DEFAULT_COLLECTION
from app.guards import COLLECTION, PRINCIPAL
from app.keys import Principal
from app.recognition import Recognizer, ThresholdInForce
from app.schemas import ThresholdInfo
from app.state import ServiceState
from faces import AlignedFace


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.faceid
    return state


def require_ready(request: Request) -> Recognizer:
    """The use cases of a ready service, or 503 ``starting`` while the model loads."""
    state = get_state(request)
    components = state.components
    if components is None:
        if state.failed:
            raise ApiError("unavailable", "The service failed to start; see its logs.")
        raise ApiError(
            "starting", "The model is still loading; retry shortly.", {"Retry-After": "2"}
        )
    return components.recognizer


Ready = Annotated[Recognizer, Depends(require_ready)]

_DIGITS = re.compile(r"[0-9]{1,20}")


def _plain_integer(value: object) -> object:
    """A query string's integer as the OpenAPI document states it: digits only (pydantic
    alone would also take ``1_000``, ``1.0``, `` 7``, ``+7`` and thousands of leading
    zeros)."""
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be an integer written with the digits 0-9 only (at most 20)")
    return value


#: The last metadata of an integer query parameter, after its ``Query(ge=…, le=…)`` (so
#: that the range stays ``minimum``/``maximum`` in the OpenAPI document):
#: ``Annotated[int, Query(ge=1, le=100), DigitsOnly]``.
DigitsOnly = BeforeValidator(_plain_integer)


async def read_upload(upload: UploadFile, recognizer: Recognizer, field: str = "image") -> bytes:
    """The bytes of an uploaded image, 413 past ``max_upload_bytes``.

    The request body was already capped while streaming (``BodySizeLimitMiddleware``);
    this checks each file on its own. Uploads are held in memory and never written out.
    """
    limit = recognizer.settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        raise ApiError(
            "too_large", f"'{field}' has {upload.size} bytes; the limit is {limit} bytes."
        )
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError("too_large", f"'{field}' is over the {limit}-byte limit.")
    return data


def identity_param(
    identity: Annotated[
        str,
        Path(
            description=f"Identity name: {IDENTITY_RULE}.",
            examples=["Ada Lovelace"],
        ),
    ],
) -> str:
    return validate_identity(identity)


Identity = Annotated[str, Depends(identity_param)]


def face_fields(face: AlignedFace) -> dict[str, object]:
    """box / detection_score / landmarks / quality of a face, as the API reports them."""
    return {
        "box": [round(float(v), 2) for v in face.box],
        "detection_score": float(face.score),
        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks],
        "quality": round(face.quality.score, 4),
    }


def threshold_info(in_force: ThresholdInForce) -> ThresholdInfo:
    """The identification threshold in force, as /health and /identify report it."""
    return ThresholdInfo(
        value=in_force.value,
        source=in_force.source,  # type: ignore[arg-type]
        target_fpir=in_force.target_fpir,
        identities=in_force.identities,
        faces=in_force.faces,
    )


def current_principal(request: Request) -> Principal:
    """Who is calling, as the access guard resolved it (``app.guards``)."""
    principal = request.scope.get(PRINCIPAL)
    assert isinstance(principal, Principal), "the access guard runs before every route"
    return principal


Caller = Annotated[Principal, Depends(current_principal)]


def current_collection(request: Request) -> str:
    """The collection a request works on: the path's ``{collection}`` (checked against the
    key by the access guard), the key's own for the dialects, else ``default``."""
    name = request.scope.get(COLLECTION)
    return DEFAULT_COLLECTION if name is None else validate_collection(str(name))


CollectionName = Annotated[str, Depends(current_collection)]


def collection_path(
    collection: Annotated[
        str,
        Path(
            description="A collection (a gallery of its own): 1–64 ASCII letters, digits, "
            "_ - ., starting with a letter or digit. Today's routes without it work on "
            "`default`.",
            examples=["front-door"],
        ),
    ],
) -> str:
    """Declares ``{collection}`` for the OpenAPI document of the collection routes."""
    return validate_collection(collection)
