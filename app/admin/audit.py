"""``python -m app.gallery audit``: the gallery audit and the calibration check on the
enrolled people, from the stored gallery (no running service needed).

The same logic as ``GET /gallery/audit`` (``app.gallery.audit``,
``app.gallery.calibration_check``) at the threshold the service would have in force for
the collection (FACEID_THRESHOLD, FACEID_TARGET_FPIR, FACEID_CALIBRATION).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from app.gallery.audit import AuditReport, audit
from app.gallery.calibration_check import PopulationCheck, check, deployment_calibration
from app.gallery.population import Population
from app.gallery.storage import GalleryStorage
from app.recognition import MatchPolicy, ThresholdInForce
from app.settings import Settings
from faces.model_contract import ModelCard


def collection_population(store: GalleryStorage, collection: str) -> Population:
    """Every stored face of ``collection``."""
    rows, _ = store.snapshot()
    collections = rows.collections or ["default"] * len(rows.face_ids)
    keep = [i for i, name in enumerate(collections) if name == collection]
    embeddings = np.asarray(rows.embeddings, dtype=np.float32)
    return Population.of(
        [rows.face_ids[i] for i in keep],
        [rows.identities[i] for i in keep],
        embeddings[keep] if keep else np.zeros((0, store.embedding_dim), np.float32),
    )


def audit_collection(
    store: GalleryStorage,
    card: ModelCard,
    settings: Settings,
    collection: str,
    threshold: float | None = None,
) -> tuple[AuditReport, PopulationCheck, ThresholdInForce]:
    """The audit at the threshold in force (or ``threshold``), and the calibration check."""
    policy = MatchPolicy(card, settings)
    population = collection_population(store, collection)
    if settings.calibration == "deployment":
        fitted = deployment_calibration(
            population, policy.aggregation, settings.target_fpir, collection
        )
        policy.deployment = lambda _name: fitted
    in_force = policy.threshold(population.identities, population.faces, threshold, collection)
    report = audit(
        population,
        in_force.value,
        policy.aggregation,
        quality=store.face_qualities(collection),
        enroll_floor=policy.quality_bar,
    )
    card_threshold = policy.card_threshold(population.identities, population.faces)
    found = check(population, card_threshold.value, settings.target_fpir, policy.aggregation)
    return report, found, in_force


def as_json(
    collection: str, report: AuditReport, found: PopulationCheck, in_force: ThresholdInForce
) -> dict[str, Any]:
    """The audit as ``GET /gallery/audit`` words it (suggested actions included)."""
    body = asdict(report)
    for dup in body["duplicates"]:
        dup["action"] = "merge"
    for face in body["misfiled"]:
        face["action"] = "move"
    return {
        "collection": collection,
        "identification": {"value": in_force.value, "source": in_force.source},
        **body,
        "population": asdict(found),
    }


def summary(report: AuditReport, found: PopulationCheck) -> list[str]:
    """Human-readable lines: one per finding, then the check."""
    lines = [
        f"{report.identities} identities, {report.faces} faces, threshold "
        f"{report.threshold:.4f} ({report.aggregation}); {len(report.duplicates)} suspected "
        f"duplicates, {len(report.misfiled)} suspected misfiled faces ({report.seconds:.1f} s)"
    ]
    for d in report.duplicates:
        faces = ", ".join(f"{f.face_id} {f.score:.3f}" for f in d.faces + d.other_faces)
        lines.append(
            f"duplicate: {d.identity!r} ({d.faces_matching}/{d.faces_total} faces match) and "
            f"{d.other!r} ({d.other_faces_matching}/{d.other_faces_total}), median "
            f"{d.score:.3f}: merge {d.merge_from!r} into {d.merge_into!r} [{faces}]"
        )
    for m in report.misfiled:
        lines.append(
            f"misfiled: face {m.face_id} of {m.identity!r} scores {m.own_score:.3f} against "
            f"its own identity and {m.other_score:.3f} against {m.move_to!r}: move it there"
        )
    for q in report.below_floor or []:
        lines.append(
            f"below floor: face {q.face_id} of {q.identity!r} has quality {q.quality:.2f}, "
            f"under {report.enroll_floor:.2f}: enrol a better photo of them, then delete it"
        )
    lines.extend(report.notes)
    if found.fpir is None:
        lines.append(
            f"calibration check: {found.status} ({found.identities} identities; "
            f"{found.min_identities} needed at target {found.target_fpir:g})"
        )
    else:
        lines.append(
            f"calibration check: {found.status}: FPIR on these people {found.fpir:.4f} "
            f"(95 % {found.fpir_low:.4f}-{found.fpir_high:.4f}) at threshold "
            f"{found.threshold:.4f}, target {found.target_fpir:g}"
        )
    return lines
