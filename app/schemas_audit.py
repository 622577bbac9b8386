"""Response schemas of the gallery audit (``GET /gallery/audit``) and of the calibration
check on the enrolled people (also in ``/health``)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas import PopulationInfo, ThresholdInfo


class FaceScoreOut(BaseModel):
    face_id: str
    score: float = Field(description="Its identity score against the other identity.")


class DuplicateOut(BaseModel):
    """Two identities that look like one person. Suggested: merge `merge_from` into
    `merge_into` (the one with more faces)."""

    identity: str
    other: str
    score: float = Field(description="Median identity score of the matching faces.")
    faces: list[FaceScoreOut] = Field(
        description="Faces of `identity` matching `other` (best first, at most 10)."
    )
    other_faces: list[FaceScoreOut] = Field(
        description="Faces of `other` matching `identity` (best first, at most 10)."
    )
    faces_matching: int
    faces_total: int
    other_faces_matching: int
    other_faces_total: int
    action: str = Field(examples=["merge"], description="Always `merge`.")
    merge_from: str
    merge_into: str


class MisfiledOut(BaseModel):
    """A face that does not match its identity's other faces but matches another.
    Suggested: move it to `move_to`."""

    face_id: str
    identity: str
    own_score: float = Field(description="Against its own identity's other faces.")
    move_to: str
    other_score: float = Field(description="Against `move_to`.")
    action: str = Field(examples=["move"], description="Always `move`.")


class LowQualityOut(BaseModel):
    face_id: str
    identity: str
    quality: float
    action: str = Field(examples=["delete"], description="Always `delete` (or re-enrol).")


class AuditResponse(BaseModel):
    """What the audit found in one collection, at the threshold in force."""

    collection: str
    identification: ThresholdInfo = Field(description="The threshold the findings use.")
    aggregation: str = Field(
        examples=["centroid"], description="How a face is scored against an identity."
    )
    identities: int
    faces: int
    duplicates: list[DuplicateOut]
    misfiled: list[MisfiledOut]
    below_floor: list[LowQualityOut] | None = Field(
        description="Faces whose quality at enrolment is under today's bar "
        "(`enroll_floor`), weakest first; faces without a stored quality are counted in "
        "`notes`."
    )
    enroll_floor: float = Field(
        description="The enrolment quality bar the faces are held to: the refusal floor or, "
        "when higher, FACEID_ENROLL_QUALITY_WARNING."
    )
    notes: list[str]
    seconds: float = Field(description="How long the audit took.")
    population: PopulationInfo | None = Field(
        default=None,
        description="The last calibration check on this collection's people (null until "
        "the background check has run).",
    )
