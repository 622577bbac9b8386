"""Dependencies shared by the routes: auth, readiness, uploads, identity names."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Path, Request, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.errors import ApiError
from app.gallery.names import validate_identity
from app.recognition import Recognizer, ThresholdInForce
from app.schemas import ThresholdInfo
from app.state import ServiceState
from faces import AlignedFace

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from FACEID_API_KEYS (only when keys are configured).",
)


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.faceid
    return state


def keys_match(given: str, keys: tuple[str, ...]) -> bool:
    """Constant-time comparison against every configured key (no early exit)."""
    given_bytes = given.encode("utf-8")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_bytes, key.encode("utf-8"))
    return found


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless auth is off or the Bearer token is one of the configured keys."""
    keys = get_state(request).settings.api_keys
    if not keys:
        return
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        raise ApiError(
            401, "unauthorized", "Missing API key: send 'Authorization: Bearer <key>'.", challenge
        )
    if not keys_match(credentials.credentials, keys):
        raise ApiError(401, "unauthorized", "Invalid API key.", challenge)


def require_ready(request: Request) -> Recognizer:
    """The use cases of a ready service, or 503 ``starting`` while the model loads."""
    state = get_state(request)
    components = state.components
    if components is None:
        if state.failed:
            raise ApiError(503, "unavailable", "The service failed to start; see its logs.")
        raise ApiError(
            503, "starting", "The model is still loading; retry shortly.", {"Retry-After": "2"}
        )
    return components.recognizer


Ready = Annotated[Recognizer, Depends(require_ready)]


async def read_upload(upload: UploadFile, recognizer: Recognizer, field: str = "image") -> bytes:
    """The bytes of an uploaded image, 413 past ``max_upload_bytes``.

    The request body was already capped while streaming (``BodySizeLimitMiddleware``);
    this checks each file on its own. Uploads are held in memory and never written out.
    """
    limit = recognizer.settings.max_upload_bytes
    if upload.size is not None and upload.size > limit:
        raise ApiError(
            413, "too_large", f"'{field}' has {upload.size} bytes; the limit is {limit} bytes."
        )
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "too_large", f"'{field}' is over the {limit}-byte limit.")
    return data


def identity_param(
    identity: Annotated[
        str,
        Path(
            description="Identity name: 1–128 Unicode letters, digits, space, _ - . '",
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
