"""Dependencies shared by the routes: auth, readiness, uploads, identity names."""

from __future__ import annotations

import hmac
import unicodedata
from typing import Annotated

from fastapi import Depends, Path, Request, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.errors import ApiError
from app.recognition import Recognizer, ThresholdInForce
from app.schemas import ThresholdInfo
from app.state import ServiceState
from faces import AlignedFace

MAX_IDENTITY_LENGTH = 128
_IDENTITY_PUNCTUATION = frozenset(" _-.'")

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


def validate_identity(name: str) -> str:
    """NFC-normalised identity name, or 422 ``invalid_identity``.

    1–128 characters of Unicode letters (with their combining marks), decimal digits,
    space and ``_ - . '``; at least one letter or digit; no leading or trailing space.
    """
    name = unicodedata.normalize("NFC", name)
    problem = None
    if not 1 <= len(name) <= MAX_IDENTITY_LENGTH:
        problem = f"must be 1 to {MAX_IDENTITY_LENGTH} characters long"
    elif name != name.strip(" "):
        problem = "must not start or end with a space"
    else:
        has_alnum = False
        for ch in name:
            category = unicodedata.category(ch)
            if category[0] == "L" or category == "Nd":
                has_alnum = True
            elif category[0] == "M" or ch in _IDENTITY_PUNCTUATION:
                continue
            else:
                problem = f"contains {ch!r}; allowed are letters, digits, space and _ - . '"
                break
        if problem is None and not has_alnum:
            problem = "must contain a letter or a digit"
    if problem is not None:
        raise ApiError(422, "invalid_identity", f"Invalid identity name: it {problem}.")
    return name


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
