"""GET /gallery/audit: suspected duplicates, misfiled faces and faces under the floor.

The pure logic is ``app.gallery.audit``; this route takes a snapshot of the collection's
in-memory index, runs it in a worker thread and names every finding's faces and scores so
that the operator can merge, move or delete in one step.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.deps import CollectionName, Ready, get_state, threshold_info
from app.calibration_monitor import CheckResult
from app.gallery.audit import AuditReport, audit
from app.gallery.population import Population
from app.recognition import ThresholdInForce
from app.schemas import PopulationInfo, error_responses
from app.schemas_audit import (
    AuditResponse,
    DuplicateOut,
    FaceScoreOut,
    LowQualityOut,
    MisfiledOut,
)
from app.state import ServiceState

router = APIRouter(prefix="/gallery", tags=["gallery"])


def population_info(result: CheckResult | None) -> PopulationInfo | None:
    """The calibration check's last result as /health and the audit report it."""
    if result is None:
        return None
    found = result.check
    return PopulationInfo(
        status=found.status,
        identities=found.identities,
        faces=found.faces,
        min_identities=found.min_identities,
        threshold=found.threshold,
        target_fpir=found.target_fpir,
        fpir=found.fpir,
        fpir_low=found.fpir_low,
        fpir_high=found.fpir_high,
        strangers_named=found.strangers_named,
        calibration="deployment" if result.calibration is not None else "card",
        computed_at=datetime.fromtimestamp(result.computed_at, UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z"),
        seconds=round(result.seconds, 3),
    )


def _response(
    collection: str,
    report: AuditReport,
    in_force: ThresholdInForce,
    enroll_floor: float,
    population: PopulationInfo | None,
) -> AuditResponse:
    return AuditResponse(
        collection=collection,
        identification=threshold_info(in_force),
        enroll_floor=enroll_floor,
        population=population,
        aggregation=report.aggregation,
        identities=report.identities,
        faces=report.faces,
        duplicates=[
            DuplicateOut(
                identity=d.identity,
                other=d.other,
                score=d.score,
                faces=[FaceScoreOut(face_id=f.face_id, score=f.score) for f in d.faces],
                other_faces=[FaceScoreOut(face_id=f.face_id, score=f.score) for f in d.other_faces],
                faces_matching=d.faces_matching,
                faces_total=d.faces_total,
                other_faces_matching=d.other_faces_matching,
                other_faces_total=d.other_faces_total,
                action="merge",
                merge_from=d.merge_from,
                merge_into=d.merge_into,
            )
            for d in report.duplicates
        ],
        misfiled=[
            MisfiledOut(
                face_id=m.face_id,
                identity=m.identity,
                own_score=m.own_score,
                move_to=m.move_to,
                other_score=m.other_score,
                action="move",
            )
            for m in report.misfiled
        ],
        below_floor=None
        if report.below_floor is None
        else [
            LowQualityOut(
                face_id=f.face_id, identity=f.identity, quality=f.quality, action="delete"
            )
            for f in report.below_floor
        ],
        notes=report.notes,
        seconds=report.seconds,
    )


@router.get(
    "/audit",
    response_model=AuditResponse,
    summary="Suspected duplicates, misfiled faces and faces under the floor",
    responses=error_responses(401, 403, 422, 503),
)
async def gallery_audit(
    recognizer: Ready,
    collection: CollectionName,
    state: Annotated[ServiceState, Depends(get_state)],
    threshold: Annotated[
        float | None,
        Query(
            ge=-1.0,
            le=1.0,
            description="Audit at this cosine threshold instead of the one in force.",
        ),
    ] = None,
) -> AuditResponse:
    """Scores every enrolled face of the collection against every identity the way
    /identify does and lists, at the threshold in force: **duplicates** (two identities
    at least half of whose faces match each other: merge `merge_from` into `merge_into`),
    **misfiled** faces (under the threshold against their own identity's other faces, at
    or above it against another: move to `move_to`), and **below_floor**: faces whose
    quality at enrolment is under today's bar (`enroll_floor`: the refusal floor or, when
    higher, `FACEID_ENROLL_QUALITY_WARNING`), weakest first; faces enrolled before quality
    was stored are counted in `notes`. Scores come from this process's in-memory index (one
    database read fetches the qualities); about 2 s for 10,000 faces on 2 cores."""
    in_force = recognizer.threshold(threshold, collection)
    index = recognizer.gallery.index_of(collection)
    policy = recognizer.policy

    components = state.components
    monitor = components.monitor if components is not None else None

    qualities = await recognizer.run_db(recognizer.gallery.store.face_qualities, collection)

    def run() -> tuple[AuditReport, CheckResult | None]:
        report = audit(
            Population.of(*index.snapshot()),
            in_force.value,
            policy.aggregation,
            quality=qualities,
            enroll_floor=policy.quality_bar,
        )
        checked = monitor.result(collection) if monitor is not None else None
        if monitor is not None and (
            checked is None or checked.change_seq != recognizer.gallery.change_seq
        ):
            checked = monitor.refresh(collection)  # the audit is slow anyway: say it as of now
        return report, checked

    report, checked = await asyncio.to_thread(run)
    return _response(collection, report, in_force, policy.quality_bar, population_info(checked))
