"""Request and response models of the HTTP API (they drive /docs and /openapi.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.error_codes import describe

_BOX = [61.3, 52.9, 186.4, 204.1]
_LANDMARKS = [[98.2, 115.0], [151.6, 113.8], [126.4, 146.2], [103.0, 173.5], [147.9, 172.4]]


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_image"], description="Machine-readable error code.")
    message: str = Field(examples=["The image could not be decoded (OSError)."])


class ErrorResponse(BaseModel):
    """The envelope of every error response."""

    error: ErrorDetail


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str = Field(examples=["faceid"])
    version: str = Field(examples=["1"])
    embedding_dim: int = Field(examples=[128])
    threshold: float = Field(
        examples=[0.485],
        description="Pair threshold of /verify: cosine similarity under which two faces "
        "are not the same person.",
    )
    engine: str = Field(
        examples=["tflite-int8"],
        description="What runs the model: `tflite-int8`, `tflite` or `savedmodel`.",
    )


class GalleryInfo(BaseModel):
    identities: int = Field(examples=[2])
    faces: int = Field(examples=[5])
    storage: Literal["sqlite", "postgresql"] = Field(
        default="sqlite", description="Where the gallery is kept (FACEID_DATABASE_URL)."
    )
    change_seq: int = Field(
        default=0,
        examples=[7],
        description="Last gallery change-log sequence number this process has applied; "
        "a replica with a lower number than its peers is behind.",
    )


class ThresholdInfo(BaseModel):
    """The /identify threshold in force and what it was derived from."""

    value: float = Field(examples=[0.71], description="Cosine threshold of /identify.")
    source: Literal["calibrated", "deployment", "setting", "request", "card"] = Field(
        examples=["calibrated"],
        description="`calibrated`: derived from the target FPIR for the gallery size; "
        "`deployment`: the same from the enrolled people's own impostor tail "
        "(FACEID_CALIBRATION=deployment); "
        "`setting`: FACEID_THRESHOLD; `request`: the request's `threshold`; `card`: the "
        "model card's pair threshold (a card without calibration).",
    )
    target_fpir: float | None = Field(
        examples=[0.01],
        description="Share of strangers the calibrated threshold lets be named (null "
        "when the threshold is fixed).",
    )
    identities: int = Field(examples=[2], description="Gallery identities it was computed for.")
    faces: int = Field(examples=[5], description="Gallery faces it was computed for.")


class QualityFloors(BaseModel):
    probe: float = Field(examples=[0.2], description="/identify: lower quality → low_quality.")
    enroll: float = Field(examples=[0.5], description="Enrolment refuses lower quality.")
    enroll_warning: float = Field(
        examples=[0.5], description="Enrolment warns (low_quality) under this quality."
    )


class CollectionInfo(BaseModel):
    """One collection: a gallery of its own, with its own calibrated threshold."""

    name: str = Field(examples=["front-door"])
    identities: int = Field(examples=[2])
    faces: int = Field(examples=[5])
    identification: ThresholdInfo


class CollectionList(BaseModel):
    collections: list[CollectionInfo]
    total: int = Field(examples=[1], description="Collections this key opens.")


class CollectionSummary(BaseModel):
    name: str = Field(examples=["default"])
    identities: int = Field(examples=[2])
    faces: int = Field(examples=[5])


class PopulationInfo(BaseModel):
    """Does the promised FPIR hold on the enrolled people? (README: "Unknown" that you
    can trust.)"""

    status: Literal["ok", "too_few_identities", "heavier_than_card"] = Field(
        examples=["ok"],
        description="`heavier_than_card`: the 95 % interval's lower bound exceeds twice "
        "the target (a warning is logged); `too_few_identities`: fewer than "
        "`min_identities`, too few to tell; `ok` otherwise.",
    )
    identities: int = Field(examples=[250], description="Enrolled identities checked.")
    faces: int = Field(examples=[700], description="Their faces, each one stranger search.")
    min_identities: int = Field(
        examples=[193], description="Identities the check needs at this target."
    )
    threshold: float = Field(
        examples=[0.71],
        description="The threshold checked: the card's (or FACEID_THRESHOLD) for this size.",
    )
    target_fpir: float = Field(examples=[0.01])
    fpir: float | None = Field(
        default=None,
        examples=[0.008],
        description="Estimated FPIR on these people: each identity, left out, a stranger "
        "to the others (null when too few identities).",
    )
    fpir_low: float | None = Field(default=None, description="95 % interval, lower bound.")
    fpir_high: float | None = Field(default=None, description="95 % interval, upper bound.")
    strangers_named: int | None = Field(
        default=None, description="Faces whose best other identity reached the threshold."
    )
    calibration: Literal["card", "deployment"] = Field(
        description="Whose tail sets the threshold in force (FACEID_CALIBRATION and "
        "whether this collection is large enough for its own)."
    )
    computed_at: str = Field(description="When the check ran (UTC, ISO 8601).")
    seconds: float = Field(description="How long it took.")


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        default="ok",
        description="`degraded`: the gallery database is unreachable; identification "
        "answers from memory, enrollment and deletion answer 503 `storage_unavailable`.",
    )
    model: ModelInfo
    gallery: GalleryInfo
    identification: ThresholdInfo
    quality_floors: QualityFloors
    collections: list[CollectionSummary] = Field(
        default_factory=list,
        description="Per-collection sizes (at most 100), only those the request's key opens "
        "(every one when keys are off or for an admin key; none without a key).",
    )
    collections_total: int = Field(
        default=1, description="How many collections hold a face (and `default`)."
    )
    population: PopulationInfo | None = Field(
        default=None,
        description="The calibration check on the default collection's enrolled people, "
        "recomputed in the background after the gallery changes (null until first run).",
    )


class StartingResponse(BaseModel):
    status: Literal["starting", "failed"] = Field(examples=["starting"])


class FaceBase(BaseModel):
    box: list[float] = Field(
        min_length=4, max_length=4, examples=[_BOX], description="x1, y1, x2, y2 in pixels."
    )
    detection_score: float = Field(examples=[0.9993])
    landmarks: list[list[float]] = Field(
        examples=[_LANDMARKS],
        description="[x, y] of left eye, right eye, nose, left and right mouth corner.",
    )
    quality: float = Field(
        ge=0.0,
        le=1.0,
        examples=[0.93],
        description="Face quality in [0, 1]: the lowest of its size, sharpness, pose and "
        "detector-confidence scores (README, 'Face quality').",
    )


class Candidate(BaseModel):
    identity: str = Field(examples=["Ada Lovelace"])
    score: float = Field(examples=[0.71], description="Cosine similarity of the best face.")


class IdentityMetadata(BaseModel):
    """An identity's optional metadata (`PUT /identities/{identity}/metadata`)."""

    model_config = ConfigDict(extra="forbid")

    external_id: str | None = Field(
        default=None,
        min_length=1,
        examples=["emp-1042"],
        description="Another system's key for this person (up to 256 characters).",
    )
    data: dict[str, object] | None = Field(
        default=None,
        examples=[{"team": "night shift"}],
        description="A small JSON object of your own (up to 4096 bytes as compact JSON).",
    )


class IdentifiedFace(FaceBase):
    identity: str | None = Field(
        examples=["Ada Lovelace"],
        description="Best match, or null: unknown, see `reason`.",
    )
    reason: Literal["below_threshold", "low_quality", "empty_gallery"] | None = Field(
        default=None,
        examples=[None],
        description="Why `identity` is null: the best score is under the threshold, the "
        "face's quality is under the probe floor (no guess is made), or nobody is "
        "enrolled. Null when a name is given.",
    )
    score: float | None = Field(
        examples=[0.71], description="Cosine similarity of the best match (null if none)."
    )
    metadata: IdentityMetadata | None = Field(
        default=None,
        description="The named identity's metadata, with `with_metadata=true` (null: none).",
    )
    candidates: list[Candidate] = Field(
        description="The top_k best identities, best first, whatever their score.",
        examples=[[{"identity": "Ada Lovelace", "score": 0.71}]],
    )


class IdentifyResponse(BaseModel):
    faces: list[IdentifiedFace] = Field(description="Every face in the photo, largest first.")
    threshold: ThresholdInfo = Field(description="The threshold these answers used.")
    model_version: str = Field(examples=["1"])


class EnrollWarning(BaseModel):
    """Something to know about an enrolment that was made all the same."""

    code: Literal["low_quality", "matches_other_identity"] = Field(
        examples=["low_quality"],
        description="low_quality: the face's quality is under FACEID_ENROLL_QUALITY_WARNING "
        "(it was enrolled; the message says why it is weak). matches_other_identity: the "
        "enrolled face already matches another identity of the collection above the threshold "
        "in force (the same person under two names, or a wrong photo?): merge or move it if so; "
        "`identity`, `score` and `threshold` say which and how much.",
    )
    message: str = Field(examples=["The face's quality is 0.31, under 0.50: the face is blurred."])
    photo: int | None = Field(
        default=None, examples=[0], description="The `image` part it is about, if one."
    )
    face_id: str | None = Field(
        default=None,
        examples=["3f0c9b7e-5d0b-4a55-9a43-6f1e2d0c8b11"],
        description="The enrolled face it is about (matches_other_identity).",
    )
    identity: str | None = Field(
        default=None, examples=["Ada King"], description="The other identity it matches."
    )
    score: float | None = Field(
        default=None, examples=[0.83], description="Cosine similarity to that identity."
    )
    threshold: float | None = Field(
        default=None, examples=[0.71], description="The threshold in force it reaches."
    )


class EnrollPhoto(BaseModel):
    """What became of one `image` part of an enrolment request."""

    index: int = Field(examples=[0], description="Position of the part among the `image` parts.")
    filename: str | None = Field(default=None, examples=["ada-1.jpg"])
    enrolled: bool = Field(examples=[True])
    face_id: str | None = Field(default=None, examples=["3f0c9b7e-5d0b-4a55-9a43-6f1e2d0c8b11"])
    faces_detected: int | None = Field(default=None, examples=[1])
    quality: float | None = Field(default=None, examples=[0.93])
    error: ErrorDetail | None = Field(
        default=None, description="Why this photo was not enrolled (no_face, low_quality, …)."
    )
    warnings: list[EnrollWarning] = Field(
        default_factory=list, description="About this photo's enrolled face (low_quality)."
    )


class EnrollResponse(BaseModel):
    identity: str = Field(examples=["Ada Lovelace"])
    face_id: str = Field(
        examples=["3f0c9b7e-5d0b-4a55-9a43-6f1e2d0c8b11"],
        description="The enrolled face (the first one, when several photos were sent).",
    )
    faces_detected: int = Field(
        examples=[1], description="Faces found in that photo; the largest was enrolled."
    )
    quality: float = Field(examples=[0.93], description="Quality of that enrolled face.")
    enrolled: int = Field(examples=[1], description="Photos of the request that were enrolled.")
    photos: list[EnrollPhoto] = Field(description="One outcome per `image` part, in order.")
    warnings: list[EnrollWarning] = Field(
        default_factory=list,
        description="Everything to know about this enrolment that did not stop it, each "
        "{code, message, …}; empty when there is nothing to say.",
    )


class IdentitySummary(BaseModel):
    identity: str = Field(examples=["Ada Lovelace"])
    faces: int = Field(examples=[2])
    metadata: IdentityMetadata | None = Field(default=None, description="null: none set.")


class IdentityList(BaseModel):
    identities: list[IdentitySummary]
    total: int = Field(examples=[1], description="Identities in the gallery, all pages.")


class EnrolledFace(BaseModel):
    face_id: str = Field(examples=["3f0c9b7e-5d0b-4a55-9a43-6f1e2d0c8b11"])
    created_at: str = Field(examples=["2025-01-31T12:00:00.000000Z"])
    model_version: str = Field(examples=["faceid/2"])


class IdentityDetail(BaseModel):
    identity: str = Field(examples=["Ada Lovelace"])
    faces: list[EnrolledFace]
    metadata: IdentityMetadata | None = Field(default=None, description="null: none set.")


class RenameRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(examples=["Ada King"], description="The new name (not yet enrolled).")


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: str = Field(
        examples=["Ada King"], description="The enrolled identity that takes every face."
    )


class MoveFaceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(
        examples=["Ada King"], description="The identity (enrolled or new) that takes the face."
    )


class VerifyResponse(BaseModel):
    same_person: bool = Field(examples=[True])
    score: float = Field(examples=[0.68], description="Cosine similarity of the two faces.")
    threshold: float = Field(examples=[0.42])


class EmbeddedFace(FaceBase):
    embedding: list[float] = Field(
        description="L2-normalised embedding; compare two with a dot product.",
        examples=[[0.031, -0.118, 0.054]],
    )


class EmbedResponse(BaseModel):
    faces: list[EmbeddedFace] = Field(description="Every face in the photo, largest first.")
    model_version: str = Field(examples=["1"])


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses=`` entries documenting the error envelope, described from the
    one table of codes (``app.error_codes``)."""
    descriptions = describe(statuses)
    return {s: {"model": ErrorResponse, "description": descriptions[s]} for s in statuses}
