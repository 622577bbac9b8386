"""The CompreFace dialect: CompreFace's REST API under ``/api/v1``, answered as CompreFace
answers, so that the CompreFace SDKs and Double Take work by changing only URL and key.

It only translates: faces come from the service's pipeline (``Recognizer.find_faces``),
identification from ``Recognizer.identify_faces`` (the one decision rule), and every
``similarity`` is the cosine mapped by ``MatchPolicy.similarity`` so that the threshold in
force maps to 0.6, Double Take's default match bar: the collection's calibrated
identification threshold for ``recognize``, the pair threshold for one-to-one comparisons
(``faces/{image_id}/verify``, ``verification/verify``). A face the rule refuses for low
quality gets ``"subjects": []``, never a guess under the floor.

The key (``x-api-key``) is checked by the access guard before the body is read; the
collection is the key's own (``Principal.home_collection``). Errors are CompreFace's
``{"message", "code"}`` (``app.errors``): no face is 400 code 28, an unknown subject 404
code 42, an unknown image 404 code 44, an existing subject 400 code 43, more than one face
where one is needed 400 code 31.

Where faceid differs from CompreFace (README, "Use it from Double Take, Home Assistant or
a CompreFace SDK"): subject names follow faceid's identity rule and match exactly (case
included); a subject exists while it has a face (``POST /subjects`` stores nothing); no
age/gender/mask/pose plugins (only ``landmarks`` and ``calculator``); one key opens
recognition, detection and verification alike (its role decides).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any, cast

import numpy as np
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi import UploadFile as FastApiUpload
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from app.api.deps import CollectionName, Ready, read_upload
from app.domain_errors import NoFace
from app.errors import ApiError, DialectError
from app.gallery.names import validate_identity
from app.recognition import Recognizer
from app.schemas import error_responses
from faces import AlignedFace

router = APIRouter(prefix="/api/v1", tags=["CompreFace dialect"])

NO_FACE = "No face is found in the given image"
_MAX_PREDICTIONS = 100  # the native top_k cap
_LIST_PAGE = 1000


# ------------------------------------------------------------------------ schemas
class Box(BaseModel):
    probability: float = Field(description="Detection score, 5 decimals.")
    x_max: int
    y_max: int
    x_min: int
    y_min: int


class SubjectMatch(BaseModel):
    subject: str
    similarity: float = Field(
        description="Cosine mapped to [0, 1]; the identification threshold in force maps "
        "to 0.6 (README: the similarity mapping)."
    )


class _Plugins(BaseModel):
    landmarks: list[list[int]] | None = Field(
        None, description="With face_plugins=landmarks: 5 points (eyes, nose, mouth corners)."
    )
    embedding: list[float] | None = Field(
        None, description="With face_plugins=calculator: the face's L2-normalised embedding."
    )
    execution_time: dict[str, float] | None = Field(
        None, description="With status=true: milliseconds per stage."
    )


class DetectedFace(_Plugins):
    box: Box


class RecognizedFace(_Plugins):
    box: Box
    subjects: list[SubjectMatch] = Field(
        description="Best subjects first (prediction_count); [] for an empty collection or "
        "a face refused for low quality."
    )


class VerifiedFace(_Plugins):
    box: Box
    subject: str
    similarity: float


class FaceMatch(_Plugins):
    box: Box
    similarity: float


class RecognizeResponse(BaseModel):
    result: list[RecognizedFace]
    plugins_versions: dict[str, str] | None = None


class DetectResponse(BaseModel):
    result: list[DetectedFace]
    plugins_versions: dict[str, str] | None = None


class VerifyImageResponse(BaseModel):
    result: list[VerifiedFace]
    plugins_versions: dict[str, str] | None = None


class Verification(BaseModel):
    source_image_face: DetectedFace
    face_matches: list[FaceMatch]
    plugins_versions: dict[str, str] | None = None


class VerificationResponse(BaseModel):
    result: list[Verification]


class Example(BaseModel):
    image_id: str
    subject: str


class ExamplesPage(BaseModel):
    faces: list[Example]
    total_pages: int
    total_elements: int
    page_number: int
    page_size: int


class Deleted(BaseModel):
    deleted: int


class Subject(BaseModel):
    subject: str


class SubjectBody(BaseModel):
    """``{"subject": name}``; other keys (the SDK adds ``api_endpoint``) are ignored."""

    model_config = ConfigDict(extra="ignore")
    subject: str | None = None


class Subjects(BaseModel):
    subjects: list[str]


class Updated(BaseModel):
    updated: bool


# -------------------------------------------------------------------- parameters
Limit = Annotated[
    int, Query(ge=0, le=1000, description="Keep the largest N faces; 0: all (FACEID_MAX_FACES).")
]
DetProb = Annotated[
    float | None,
    Query(ge=0.0, le=1.0, description="Drop faces whose detection score is under this."),
]
Plugins = Annotated[
    str,
    Query(
        description="Comma-separated: `landmarks`, `calculator` (the embedding); other slugs "
        "(age, gender, mask, pose, `undefined`…) are ignored."
    ),
]
Status = Annotated[
    bool, Query(description="Add execution_time and plugins_versions (true/True/1/yes).")
]
PredictionCount = Annotated[
    int, Query(ge=-1, le=1_000_000, description="Subjects per face, best first; -1: up to 100.")
]
ImageId = Annotated[str, Path(max_length=64, description="An image_id (a face id).")]
SubjectPath = Annotated[str, Path(max_length=256, description="A subject (identity) name.")]


def _nfc(name: str) -> str:
    """Subject names are stored NFC-normalised (``validate_identity``) and match exactly."""
    return unicodedata.normalize("NFC", name)


_ERRORS = error_responses(400, 401, 403, 404, 413, 503)


def _image_body(*fields: str) -> dict[str, Any]:
    """The OpenAPI request body of an image route: multipart, or base64 in JSON."""
    multipart = {
        "type": "object",
        "required": list(fields),
        "properties": {
            f: {"type": "string", "format": "binary", "description": "An image file."}
            for f in fields
        },
    }
    as_json = {
        "type": "object",
        "required": list(fields),
        "properties": {
            f: {"type": "string", "contentEncoding": "base64", "description": "Base64 image."}
            for f in fields
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart},
                "application/json": {"schema": as_json},
            },
        }
    }


# ----------------------------------------------------------------------- helpers
async def _images(request: Request, recognizer: Recognizer, *fields: str) -> list[bytes]:
    """The image fields of a multipart body, or of a JSON body of base64 strings."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            payload = json.loads(await request.body())
        except ValueError:
            raise DialectError(400, 0, "The JSON body cannot be parsed.") from None
        if not isinstance(payload, dict):
            raise DialectError(400, 5, f"Field {fields[0]} cannot be empty")
        limit = recognizer.settings.max_upload_bytes
        return [_from_base64(payload.get(field), field, limit) for field in fields]
    if content_type != "multipart/form-data":
        raise DialectError(400, 34, f"Required part {fields[0]} is missing")
    images = []
    async with request.form(max_files=len(fields) + 1) as form:
        for field in fields:
            upload = form.get(field)
            if not isinstance(upload, UploadFile):
                raise DialectError(400, 34, f"Required part {field} is missing")
            images.append(await read_upload(cast(FastApiUpload, upload), recognizer, field))
    return images


def _from_base64(value: object, field: str, limit: int) -> bytes:
    """Decode a base64 image (a ``data:…;base64,`` prefix is allowed), never past ``limit``
    decoded bytes (413)."""
    if not isinstance(value, str) or not value:
        raise DialectError(400, 5, f"Field {field} cannot be empty")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    if len(value) > 4 * -(-limit // 3) + 4096:  # whitespace allowed, then decoded exactly
        raise ApiError("too_large", f"'{field}' is over the {limit}-byte limit.")
    text = "".join(value.split())
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DialectError(400, 21, "Provided value is not Base64") from None
    if len(data) > limit:
        raise ApiError("too_large", f"'{field}' is over the {limit}-byte limit.")
    return data


@dataclass
class _Options:
    """What the CompreFace query parameters ask for."""

    limit: int
    det_prob_threshold: float | None
    landmarks: bool
    calculator: bool
    status: bool

    @staticmethod
    def of(limit: int, det: float | None, plugins: str, status: bool) -> _Options:
        slugs = {p.strip().lower() for p in plugins.split(",")}
        return _Options(limit, det, "landmarks" in slugs, "calculator" in slugs, status)


class _Clock:
    """Milliseconds per stage, for ``execution_time``."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.times[stage] = self.times.get(stage, 0.0) + round((now - self._t) * 1000, 1)
        self._t = now


async def _faces(
    recognizer: Recognizer, data: bytes, route: str, options: _Options
) -> list[AlignedFace]:
    """The faces of a photo, largest first, over ``det_prob_threshold``, at most
    ``limit``; NoFace (400 code 28) when none is left."""
    faces = await recognizer.find_faces(data, route, recognizer.settings.max_faces)
    if options.det_prob_threshold is not None:
        faces = [f for f in faces if f.score >= options.det_prob_threshold]
    if options.limit:
        faces = faces[: options.limit]
    if not faces:
        raise NoFace(NO_FACE)
    return faces


def _box(face: AlignedFace) -> dict[str, Any]:
    x1, y1, x2, y2 = (round(float(v)) for v in face.box)
    return {
        "probability": round(float(face.score), 5),
        "x_max": x2,
        "y_max": y2,
        "x_min": max(x1, 0),
        "y_min": max(y1, 0),
    }


def _extras(
    face: AlignedFace, embedding: np.ndarray | None, options: _Options, clock: _Clock
) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if options.landmarks:
        extra["landmarks"] = [[round(float(x)), round(float(y))] for x, y in face.landmarks]
    if options.calculator and embedding is not None:
        extra["embedding"] = [float(v) for v in embedding]
    if options.status:
        extra["execution_time"] = dict(clock.times)
    return extra


def _versions(recognizer: Recognizer, options: _Options) -> dict[str, str] | None:
    if not options.status:
        return None
    return {"detector": "faceid.MTCNN", "calculator": f"faceid.{recognizer.model_version}"}


def _subject_name(name: str | None) -> str:
    """A subject name by faceid's identity rule (CompreFace's codes: 26 empty, 36 refused)."""
    if name is None or not name.strip():
        raise DialectError(400, 26, "Subject name cannot be empty")
    return validate_identity(name)


async def _face_count(recognizer: Recognizer, subject: str, collection: str) -> int:
    _, total = await recognizer.run_db(recognizer.gallery.list_faces, 1, 0, collection, subject)
    return total


async def _all_subjects(recognizer: Recognizer, collection: str) -> list[str]:
    names: list[str] = []
    while True:
        page, total = await recognizer.run_db(
            recognizer.gallery.list_identities, _LIST_PAGE, len(names), collection
        )
        names += [name for name, _ in page]
        if not page or len(names) >= total:
            return names


def _similarity(recognizer: Recognizer, a: np.ndarray, b: np.ndarray) -> float:
    policy = recognizer.policy
    return policy.similarity(policy.pair_score(a, b), policy.verify_threshold)


# ------------------------------------------------------------------- recognition
@router.post(
    "/recognition/recognize",
    response_model=RecognizeResponse,
    response_model_exclude_none=True,
    summary="CompreFace: recognise every face of a photo",
    responses=_ERRORS,
    openapi_extra=_image_body("file"),
)
async def compreface_recognize(
    request: Request,
    recognizer: Ready,
    collection: CollectionName,
    limit: Limit = 0,
    prediction_count: PredictionCount = 1,
    det_prob_threshold: DetProb = None,
    face_plugins: Plugins = "",
    status: Status = False,
    detect_faces: Annotated[bool, Query(description="Accepted; faces are always detected.")] = True,
) -> dict[str, Any]:
    """Each face (largest first) with its best subjects and their similarity. Multipart
    `file`, or JSON `{"file": "<base64>"}`. No face: 400 `{"message": "No face is found
    in the given image", "code": 28}`."""
    del detect_faces
    if prediction_count == 0:
        raise DialectError(400, 26, "prediction_count should be equal or greater than 1; ")
    options = _Options.of(limit, det_prob_threshold, face_plugins, status)
    [data] = await _images(request, recognizer, "file")
    clock = _Clock()
    faces = await _faces(recognizer, data, "/api/v1/recognition/recognize", options)
    clock.lap("detector")
    top_k = _MAX_PREDICTIONS if prediction_count < 0 else min(prediction_count, _MAX_PREDICTIONS)
    found = await recognizer.identify_faces(faces, top_k, None, collection)
    clock.lap("calculator")
    threshold = found.threshold.value
    result = []
    for face in found.faces:
        subjects = (
            []
            if face.decision.reason == "low_quality"
            else [
                {"subject": name, "similarity": recognizer.policy.similarity(score, threshold)}
                for name, score in face.candidates
            ]
        )
        embedding = face.embedding if options.calculator else None
        result.append(
            {
                "box": _box(face.face),
                "subjects": subjects,
                **_extras(face.face, embedding, options, clock),
            }
        )
    return {"result": result, "plugins_versions": _versions(recognizer, options)}


@router.post(
    "/detection/detect",
    response_model=DetectResponse,
    response_model_exclude_none=True,
    summary="CompreFace: detect the faces of a photo",
    responses=_ERRORS,
    openapi_extra=_image_body("file"),
)
async def compreface_detect(
    request: Request,
    recognizer: Ready,
    limit: Limit = 0,
    det_prob_threshold: DetProb = None,
    face_plugins: Plugins = "",
    status: Status = False,
) -> dict[str, Any]:
    """Every face's box (largest first); no face: 400 code 28."""
    options = _Options.of(limit, det_prob_threshold, face_plugins, status)
    [data] = await _images(request, recognizer, "file")
    clock = _Clock()
    faces = await _faces(recognizer, data, "/api/v1/detection/detect", options)
    clock.lap("detector")
    embeddings = await recognizer.embed(faces) if options.calculator else None
    if options.calculator:
        clock.lap("calculator")
    result = [
        {
            "box": _box(face),
            **_extras(face, None if embeddings is None else embeddings[i], options, clock),
        }
        for i, face in enumerate(faces)
    ]
    return {"result": result, "plugins_versions": _versions(recognizer, options)}


@router.post(
    "/verification/verify",
    response_model=VerificationResponse,
    response_model_exclude_none=True,
    summary="CompreFace: compare the face of a source photo with the faces of a target",
    responses=_ERRORS,
    openapi_extra=_image_body("source_image", "target_image"),
)
async def compreface_verification(
    request: Request,
    recognizer: Ready,
    limit: Limit = 0,
    det_prob_threshold: DetProb = None,
    face_plugins: Plugins = "",
    status: Status = False,
) -> dict[str, Any]:
    """`source_image` must hold one face (after `limit`; more: 400 code 31); each face of
    `target_image` gets a similarity anchored at the pair threshold (0.6 = same person)."""
    options = _Options.of(limit, det_prob_threshold, face_plugins, status)
    source_data, target_data = await _images(request, recognizer, "source_image", "target_image")
    clock = _Clock()
    route = "/api/v1/verification/verify"
    source, target = await asyncio.gather(
        _faces(recognizer, source_data, route, options),
        _faces(recognizer, target_data, route, options),
    )
    if len(source) > 1:
        raise DialectError(400, 31, "More than one face in the source image")
    clock.lap("detector")
    embeddings = await recognizer.embed([*source, *target])
    clock.lap("calculator")
    matches = [
        {
            "box": _box(face),
            "similarity": _similarity(recognizer, embeddings[0], embeddings[i + 1]),
            **_extras(face, embeddings[i + 1], options, clock),
        }
        for i, face in enumerate(target)
    ]
    source_face = {"box": _box(source[0]), **_extras(source[0], embeddings[0], options, clock)}
    return {
        "result": [
            {
                "source_image_face": source_face,
                "face_matches": matches,
                "plugins_versions": _versions(recognizer, options),
            }
        ]
    }


# ----------------------------------------------------------------------- examples
@router.post(
    "/recognition/faces",
    response_model=Example,
    status_code=201,
    summary="CompreFace: add an example (a face) of a subject",
    responses=_ERRORS,
    openapi_extra=_image_body("file"),
)
async def compreface_add_example(
    request: Request,
    recognizer: Ready,
    collection: CollectionName,
    subject: Annotated[str | None, Query(description="The subject (identity) name.")] = None,
    det_prob_threshold: DetProb = None,
) -> dict[str, Any]:
    """Enrols the photo's face under `subject` (created if new). As CompreFace: a photo
    with more than one face is refused (400 code 31); a face under the enrolment quality
    floor is refused too (400 code 28, the message says why)."""
    if subject is None:
        raise DialectError(400, 33, "Required parameter subject is missing")
    name = _subject_name(subject)
    [data] = await _images(request, recognizer, "file")
    options = _Options(0, det_prob_threshold, False, False, False)
    faces = await _faces(recognizer, data, "/api/v1/recognition/faces", options)
    if len(faces) > 1:
        raise DialectError(400, 31, "More than one face in the source image")
    face = recognizer.policy.enrollable(faces)
    [enrolled] = await recognizer.enroll_faces(name, [(face, data)], collection)
    return {"image_id": enrolled.face_id, "subject": enrolled.identity}


@router.get(
    "/recognition/faces",
    response_model=ExamplesPage,
    summary="CompreFace: list the examples",
    responses=_ERRORS,
)
async def compreface_list_examples(
    recognizer: Ready,
    collection: CollectionName,
    page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    size: Annotated[int, Query(ge=1, le=1000)] = 20,
    subject: Annotated[str | None, Query(description="Only this subject's examples.")] = None,
) -> dict[str, Any]:
    """A page of the examples, oldest first."""
    records, total = await recognizer.run_db(
        recognizer.gallery.list_faces, size, page * size, collection, _nfc(subject or "") or None
    )
    return {
        "faces": [{"image_id": r.face_id, "subject": r.identity} for r in records],
        "total_pages": -(-total // size),
        "total_elements": total,
        "page_number": page,
        "page_size": size,
    }


@router.delete(
    "/recognition/faces",
    response_model=Deleted,
    summary="CompreFace: delete every example of a subject (or of every subject)",
    responses=_ERRORS,
)
async def compreface_delete_examples(
    recognizer: Ready,
    collection: CollectionName,
    subject: Annotated[str | None, Query(description="Without it: every example.")] = None,
) -> dict[str, int]:
    """`{"deleted": n}`: the faces erased (0 for an unknown subject)."""
    if subject:
        count = await recognizer.run_db(
            recognizer.gallery.delete_identity, _nfc(subject), collection
        )
    else:
        erased = await recognizer.run_db(recognizer.gallery.delete_faces, None, collection)
        count = len(erased)
    return {"deleted": count}


@router.delete(
    "/recognition/faces/{image_id}",
    response_model=Example,
    summary="CompreFace: delete one example",
    responses=_ERRORS,
)
async def compreface_delete_example(
    recognizer: Ready, collection: CollectionName, image_id: ImageId
) -> dict[str, str]:
    """The erased example; unknown: 404 code 44."""
    erased = await recognizer.run_db(recognizer.gallery.delete_faces, [image_id], collection)
    if not erased:
        raise DialectError(404, 44, f"Image {image_id} not found")
    return {"image_id": erased[0].face_id, "subject": erased[0].identity}


@router.post(
    "/recognition/faces/delete",
    response_model=list[Example],
    summary="CompreFace: delete several examples",
    responses=_ERRORS,
)
async def compreface_delete_several(
    recognizer: Ready,
    collection: CollectionName,
    image_ids: Annotated[list[str], Body(max_length=10_000, description="image_ids to erase.")],
) -> list[dict[str, str]]:
    """The examples erased, in the order asked (unknown ids are ignored)."""
    erased = await recognizer.run_db(recognizer.gallery.delete_faces, image_ids, collection)
    order = {image_id: i for i, image_id in reversed(list(enumerate(image_ids)))}
    erased.sort(key=lambda r: order[r.face_id])
    return [{"image_id": r.face_id, "subject": r.identity} for r in erased]


@router.post(
    "/recognition/faces/{image_id}/verify",
    response_model=VerifyImageResponse,
    response_model_exclude_none=True,
    summary="CompreFace: compare the faces of a photo with one example",
    responses=_ERRORS,
    openapi_extra=_image_body("file"),
)
async def compreface_verify_example(
    request: Request,
    recognizer: Ready,
    collection: CollectionName,
    image_id: ImageId,
    limit: Limit = 0,
    det_prob_threshold: DetProb = None,
    face_plugins: Plugins = "",
    status: Status = False,
) -> dict[str, Any]:
    """Each face of the photo with its similarity to the example (anchored at the pair
    threshold: 0.6 = same person); unknown example: 404 code 44."""
    stored = await recognizer.run_db(recognizer.gallery.find_face, image_id, collection)
    if stored is None:
        raise DialectError(404, 44, f"Image {image_id} not found")
    options = _Options.of(limit, det_prob_threshold, face_plugins, status)
    [data] = await _images(request, recognizer, "file")
    clock = _Clock()
    faces = await _faces(recognizer, data, "/api/v1/recognition/faces/{image_id}/verify", options)
    clock.lap("detector")
    embeddings = await recognizer.embed(faces)
    clock.lap("calculator")
    result = [
        {
            "box": _box(face),
            "subject": stored.identity,
            "similarity": _similarity(recognizer, embeddings[i], stored.embedding),
            **_extras(face, embeddings[i], options, clock),
        }
        for i, face in enumerate(faces)
    ]
    return {"result": result, "plugins_versions": _versions(recognizer, options)}


# ----------------------------------------------------------------------- subjects
@router.post(
    "/recognition/subjects",
    response_model=Subject,
    status_code=201,
    summary="CompreFace: add a subject",
    responses=_ERRORS,
)
async def compreface_add_subject(
    recognizer: Ready, collection: CollectionName, body: SubjectBody
) -> dict[str, str]:
    """Checks the name and answers 201 (400 code 43 if it has examples already). faceid
    keeps no empty subjects: the subject is listed once its first example is added."""
    name = _subject_name(body.subject)
    if await _face_count(recognizer, name, collection):
        raise DialectError(400, 43, "Subject already exists")
    return {"subject": name}


@router.get(
    "/recognition/subjects",
    response_model=Subjects,
    summary="CompreFace: list the subjects",
    responses=_ERRORS,
)
@router.get("/recognition/subjects/", response_model=Subjects, include_in_schema=False)
async def compreface_list_subjects(recognizer: Ready, collection: CollectionName) -> dict[str, Any]:
    """Every subject with an example, by name."""
    return {"subjects": await _all_subjects(recognizer, collection)}


@router.put(
    "/recognition/subjects/{subject}",
    response_model=Updated,
    summary="CompreFace: rename a subject (merging into an existing one)",
    responses=_ERRORS,
)
async def compreface_rename_subject(
    recognizer: Ready, collection: CollectionName, subject: SubjectPath, body: SubjectBody
) -> dict[str, bool]:
    """Moves every example of `subject` to the new name; if that subject exists, the two
    merge. `{"updated": false}` when the new name is empty or the same; unknown subject:
    404 code 42."""
    subject, new = _nfc(subject), body.subject
    if not new or new == subject:
        return {"updated": False}
    new = _subject_name(new)
    moved = await recognizer.run_db(recognizer.gallery.rename_identity, subject, new, collection)
    if not moved:
        raise DialectError(404, 42, f"Subject {subject} not found")
    return {"updated": True}


@router.delete(
    "/recognition/subjects/{subject}",
    response_model=Subject,
    summary="CompreFace: delete a subject and its examples",
    responses=_ERRORS,
)
async def compreface_delete_subject(
    recognizer: Ready, collection: CollectionName, subject: SubjectPath
) -> dict[str, str]:
    """Erases every example of `subject`; unknown: 404 code 42."""
    subject = _nfc(subject)
    if not await recognizer.run_db(recognizer.gallery.delete_identity, subject, collection):
        raise DialectError(404, 42, f"Subject {subject} not found")
    return {"subject": subject}


@router.delete(
    "/recognition/subjects",
    response_model=Deleted,
    summary="CompreFace: delete every subject",
    responses=_ERRORS,
)
async def compreface_delete_subjects(
    recognizer: Ready, collection: CollectionName
) -> dict[str, int]:
    """Erases every example of the collection; `{"deleted": n}` subjects."""
    erased = await recognizer.run_db(recognizer.gallery.delete_faces, None, collection)
    return {"deleted": len({r.identity for r in erased})}
