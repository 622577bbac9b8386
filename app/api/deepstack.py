"""The DeepStack dialect: DeepStack's face API under ``/v1/vision/face…``, as DeepStack
answers it, so that its clients (``deepstack-python``, Home Assistant's ``deepstack_face``
integration, Double Take's DeepStack detector) work by changing only the URL and the key.

Every route is a ``POST`` of a form (multipart, or URL-encoded when there is no file), and
every body is ``{"success": true, …, "duration": 0}``; errors are ``{"success": false,
"error": …, "duration": 0}`` (``app.errors.deepstack_error``). The key comes as the form
field ``api_key`` (or a header); the access guard (``app.guards``) checks it before a
photo byte is read, and the key's own collection is the gallery used.

The dialect only translates: faces, decisions and scores come from the ``Recognizer`` and
its ``MatchPolicy``, as on the native routes.

- ``confidence`` (recognize) and ``similarity`` (match) are ``MatchPolicy.similarity`` of
  the cosine: monotone, in [0, 1], the threshold in force mapped to 0.6. A face the
  service calls unknown (under the threshold, low quality, empty gallery) is ``userid:
  "unknown", confidence: 0`` whatever ``min_confidence`` says; ``min_confidence`` can only
  make the answer stricter (a named face under it is unknown too). deepstack-python sends
  0.45 by default, lower than any named face's confidence (≥ 0.6), so it changes nothing.
- ``register`` adds the largest face of each photo to the identity (DeepStack keeps one
  averaged embedding and replaces it); it answers ``face updated`` when the identity
  already had faces, ``face added`` otherwise. To replace, ``delete`` first.
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi import UploadFile as FastAPIUpload
from pydantic import BaseModel, Field
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from app.api.deps import CollectionName, Ready
from app.api.deps import read_upload as _read_upload
from app.domain_errors import InvalidIdentity, NoFace
from app.errors import ApiError
from app.gallery.names import validate_identity
from app.recognition import Recognizer

#: DeepStack's defaults: detection threshold of /face, recognition threshold of /recognize.
DETECT_MIN_CONFIDENCE = 0.55
UNKNOWN = "unknown"
_LIST_PAGE = 1000
_MAX_TEXT_FIELDS = 32


# ------------------------------------------------------------------ response bodies
class DeepStackDetection(BaseModel):
    confidence: float = Field(description="The detector's score for this face (0..1).")
    y_min: int
    x_min: int
    y_max: int
    x_max: int


class DeepStackRecognition(BaseModel):
    confidence: float = Field(
        description="How sure the service is (0..1; the threshold in force maps to 0.6); "
        "0 for an unknown face."
    )
    userid: str = Field(description='The person, or "unknown".')
    y_min: int
    x_min: int
    y_max: int
    x_max: int


class DeepStackDetectResponse(BaseModel):
    success: bool = True
    predictions: list[DeepStackDetection]
    duration: int = 0


class DeepStackRecognizeResponse(BaseModel):
    success: bool = True
    predictions: list[DeepStackRecognition]
    duration: int = 0


class DeepStackRegisterResponse(BaseModel):
    success: bool = True
    message: str = Field(description='"face added" (a new person) or "face updated".')
    duration: int = 0


class DeepStackListResponse(BaseModel):
    success: bool = True
    faces: list[str] = Field(description="Every registered userid.")
    duration: int = 0


class DeepStackDeleteResponse(BaseModel):
    success: bool = True
    duration: int = 0


class DeepStackMatchResponse(BaseModel):
    success: bool = True
    similarity: float = Field(
        description="Similarity of the two largest faces (0..1; the pair threshold maps to 0.6)."
    )
    duration: int = 0


class DeepStackError(BaseModel):
    """Every error of the DeepStack routes, as DeepStack answers it."""

    success: bool = False
    error: str = Field(examples=["Incorrect api key"])
    duration: int = 0


#: Documents ``DeepStackError`` (``app.openapi`` points every error status of these
#: routes at it).
_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": DeepStackError}}

router = APIRouter(prefix="/v1/vision/face", tags=["DeepStack dialect"], responses=_ERRORS)


# ------------------------------------------------------------------ request bodies (docs)
_FILE = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
# Text fields are left untyped: a form's fields are text anyway, and the routes check them.
_API_KEY = {"description": "The API key (or send it as a header), before any file part."}
_MIN_CONFIDENCE = {"description": "A number in [0, 1]."}


def _body(properties: dict[str, Any], required: list[str], files: str) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"api_key": _API_KEY, **properties},
        "additionalProperties": _FILE if files else True,
        "description": files or "A form without files.",
    }
    if required:
        schema["required"] = required
    content = {"multipart/form-data": {"schema": schema}}
    if not files:
        content["application/x-www-form-urlencoded"] = {"schema": schema}
    return {"requestBody": {"required": bool(required), "content": content}}


# ------------------------------------------------------------------ form helpers
async def _form(request: Request, max_files: int, too_many: str) -> FormData:
    """The request's form, uploads held in memory; more than ``max_files`` files are
    refused while the body streams (``too_many``: the message)."""
    try:
        return await request.form(max_files=max_files, max_fields=_MAX_TEXT_FIELDS)
    except HTTPException as exc:
        if exc.status_code == 400 and str(exc.detail).startswith("Too many files"):
            raise ApiError("too_many_images", too_many) from None
        raise


def _files(form: FormData) -> list[tuple[str, UploadFile]]:
    return [(name, value) for name, value in form.multi_items() if isinstance(value, UploadFile)]


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def _min_confidence(form: FormData) -> float | None:
    raw = _text(form, "min_confidence")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError("validation_error", "Invalid value for min_confidence") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        if value > 1.0:
            raise ApiError("validation_error", "min_confidence cannot be greater than 1")
        raise ApiError("validation_error", "Invalid value for min_confidence")
    return value


def _userid(form: FormData) -> str:
    raw = _text(form, "userid")
    if raw is None or raw.strip() == "":
        raise ApiError("validation_error", "userid not specified")
    return raw


async def _image(form: FormData, recognizer: Recognizer) -> bytes:
    """The ``image`` file of a detect / recognize form."""
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise ApiError("validation_error", "No valid image file found")
    return await read_upload(upload, recognizer)


async def read_upload(upload: UploadFile, recognizer: Recognizer, field: str = "image") -> bytes:
    """``app.api.deps.read_upload`` for a file of ``request.form()`` (the same class
    underneath FastAPI's ``UploadFile``)."""
    return await _read_upload(cast(FastAPIUpload, upload), recognizer, field)


def _box(box: tuple[float, float, float, float]) -> dict[str, int]:
    x1, y1, x2, y2 = (max(0, round(float(v))) for v in box)
    return {"y_min": y1, "x_min": x1, "y_max": y2, "x_max": x2}


# ------------------------------------------------------------------ routes
_DETECT_DOC = dict(
    response_model=DeepStackDetectResponse,
    summary="DeepStack: detect faces",
    openapi_extra=_body(
        {
            "image": _FILE,
            "min_confidence": {
                **_MIN_CONFIDENCE,
                "description": "Detection threshold (default 0.55).",
            },
        },
        ["image"],
        "The photo in `image`.",
    ),
)


async def _detect(request: Request, recognizer: Recognizer) -> DeepStackDetectResponse:
    form = await _form(request, 1, "Send one file, in `image`.")
    floor = _min_confidence(form)
    data = await _image(form, recognizer)
    faces = await recognizer.find_faces(data, "/v1/vision/face", recognizer.settings.max_faces)
    floor = DETECT_MIN_CONFIDENCE if floor is None else floor
    return DeepStackDetectResponse(
        predictions=[
            DeepStackDetection(confidence=round(float(f.score), 5), **_box(f.box))
            for f in faces
            if f.score >= floor
        ]
    )


@router.post("", **_DETECT_DOC)  # type: ignore[arg-type]
async def deepstack_detect(request: Request, recognizer: Ready) -> DeepStackDetectResponse:
    """Every face of the photo (largest first) with the detector's score and its box;
    `min_confidence` is the detection threshold (DeepStack's default 0.55). No face:
    `"predictions": []`."""
    return await _detect(request, recognizer)


@router.post("/", include_in_schema=False, **_DETECT_DOC)  # type: ignore[arg-type]
async def deepstack_detect_slash(request: Request, recognizer: Ready) -> DeepStackDetectResponse:
    """``/v1/vision/face/``: the path DeepStack itself registers for detection."""
    return await _detect(request, recognizer)


@router.post(
    "/recognize",
    response_model=DeepStackRecognizeResponse,
    summary="DeepStack: who is in this photo",
    openapi_extra=_body(
        {
            "image": _FILE,
            "min_confidence": {
                **_MIN_CONFIDENCE,
                "description": "Name a face only from this confidence on; it can only make "
                "the service's own decision stricter (that decision is 0.6 on this scale).",
            },
        },
        ["image"],
        "The photo in `image`.",
    ),
)
async def deepstack_recognize(
    request: Request, recognizer: Ready, collection: CollectionName
) -> DeepStackRecognizeResponse:
    """Each face (largest first) with the person it is, or `"unknown"` with confidence 0.
    The service's decision rule names the face (calibrated threshold, quality floor);
    `confidence` is its cosine mapped to [0, 1] with the threshold in force at 0.6; a
    named face under `min_confidence` is reported unknown."""
    form = await _form(request, 1, "Send one file, in `image`.")
    min_confidence = _min_confidence(form)
    data = await _image(form, recognizer)
    faces = await recognizer.find_faces(
        data, "/v1/vision/face/recognize", recognizer.settings.max_faces
    )
    result = await recognizer.identify_faces(faces, 1, None, collection)
    predictions = []
    for face in result.faces:
        userid, confidence = UNKNOWN, 0.0
        decision = face.decision
        if decision.identity is not None and decision.score is not None:
            similarity = recognizer.policy.similarity(decision.score, result.threshold.value)
            if min_confidence is None or similarity >= min_confidence:
                userid, confidence = decision.identity, similarity
        predictions.append(
            DeepStackRecognition(confidence=confidence, userid=userid, **_box(face.face.box))
        )
    return DeepStackRecognizeResponse(predictions=predictions)


@router.post(
    "/register",
    response_model=DeepStackRegisterResponse,
    summary="DeepStack: register a person",
    openapi_extra=_body(
        {"userid": {"description": "The person's name."}},
        ["userid"],
        "One or more photos, under any field names (`image`, `image1`, `image2`, …), up to "
        "FACEID_ENROLL_MAX_IMAGES.",
    ),
)
async def deepstack_register(
    request: Request, recognizer: Ready, collection: CollectionName
) -> DeepStackRegisterResponse:
    """Adds the largest face of each photo to the person (faces already registered are
    kept: unlike DeepStack, which keeps one averaged face and replaces it; delete first to
    replace). `"face updated"` when the person already had faces, else `"face added"`.
    400 `no face detected` when no photo has a usable face."""
    limit = recognizer.settings.enroll_max_images
    form = await _form(
        request,
        limit,
        f"More than {limit} files: send at most FACEID_ENROLL_MAX_IMAGES ({limit}) photos "
        "per request.",
    )
    userid = _userid(form)
    _min_confidence(form)  # deepstack-python sends it; register does not use it
    identity = validate_identity(userid)
    if identity.lower() == UNKNOWN:
        raise ApiError(
            "invalid_identity", f"userid {UNKNOWN!r} is reserved: it names unrecognised faces"
        )
    files = _files(form)
    if not files:
        raise ApiError("validation_error", "No valid image file found")
    photos = [await read_upload(upload, recognizer, name) for name, upload in files]
    had_faces = bool(await recognizer.run_db(recognizer.gallery.faces_of, identity, collection))
    outcomes = await recognizer.enroll_photos(identity, photos, collection)
    if all(o.enrolled is None for o in outcomes):
        errors = [o.error for o in outcomes if o.error is not None]
        if len(errors) == 1 or all(isinstance(e, NoFace) for e in errors):
            raise errors[0]
        reasons = "; ".join(f"{name}: {e.code}" for (name, _), e in zip(files, errors, strict=True))
        raise ApiError("no_photo_enrolled", f"No photo was registered ({reasons}).")
    return DeepStackRegisterResponse(message="face updated" if had_faces else "face added")


@router.post(
    "/list",
    response_model=DeepStackListResponse,
    summary="DeepStack: registered people",
)
async def deepstack_list(recognizer: Ready, collection: CollectionName) -> DeepStackListResponse:
    """Every userid of the key's collection, in name order. The body is not read (but for
    the key: `api_key=…`, URL-encoded or multipart, as deepstack-python sends it)."""
    names: list[str] = []
    while True:
        page, total = await recognizer.run_db(
            recognizer.gallery.list_identities, _LIST_PAGE, len(names), collection
        )
        names.extend(identity for identity, _ in page)
        if not page or len(names) >= total:
            return DeepStackListResponse(faces=names)


@router.post(
    "/delete",
    response_model=DeepStackDeleteResponse,
    summary="DeepStack: erase a person",
    openapi_extra=_body({"userid": {"description": "The person to erase."}}, ["userid"], ""),
)
async def deepstack_delete(
    request: Request, recognizer: Ready, collection: CollectionName
) -> DeepStackDeleteResponse:
    """Erases every face of the person. Succeeds for a userid that is not registered (as
    DeepStack does)."""
    form = await _form(request, 0, "This form takes no file.")
    try:
        identity = validate_identity(_userid(form))
    except InvalidIdentity:
        return DeepStackDeleteResponse()  # no such name can be registered
    await recognizer.run_db(recognizer.gallery.delete_identity, identity, collection)
    return DeepStackDeleteResponse()


@router.post(
    "/match",
    response_model=DeepStackMatchResponse,
    summary="DeepStack: compare two photos",
    openapi_extra=_body({}, [], "Exactly two photos, under any field names (`image1`, `image2`)."),
)
async def deepstack_match(request: Request, recognizer: Ready) -> DeepStackMatchResponse:
    """The similarity of the largest faces of two photos: the cosine mapped to [0, 1] with
    the pair threshold (the one `/verify` uses) at 0.6. 400 `no face detected` when a photo
    has no face."""
    form = await _form(request, 2, "only two images allowed")
    files = _files(form)
    if not files:
        raise ApiError("validation_error", "No valid image file found")
    if len(files) == 1:
        raise ApiError("validation_error", "expected two image files, only one found")
    (name_a, upload_a), (name_b, upload_b) = files
    data_a = await read_upload(upload_a, recognizer, name_a)
    data_b = await read_upload(upload_b, recognizer, name_b)
    result = await recognizer.verify(data_a, data_b)
    policy = recognizer.policy
    return DeepStackMatchResponse(similarity=policy.similarity(result.score, result.threshold))
