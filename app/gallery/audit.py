"""The gallery audit: mistakes an operator can fix in one step, found in the embeddings.

People curate galleries and people make mistakes (the public evaluation data holds them
too: ``training/data_fixes.json``). Scoring every enrolled face against every identity the
way ``/identify`` would (``app.gallery.population``) and holding the scores to the
threshold in force shows:

* **suspected duplicates**: two identities whose faces match each other: at least half of
  each one's faces score at or above the threshold against the other (faces already
  suspected misfiled left out). Suggested action: merge the identity with fewer faces into
  the other.
* **suspected misfiled faces**: a face that scores under the threshold against its own
  identity's other faces but at or above it against another identity (and higher than
  against its own). Suggested action: move it there.
* **faces under today's enrolment floor**: each face's quality as enrolment judged it
  (``faces.quality``, schema 5) against the floor in force today (the caller passes both:
  the refusal floor or, when higher, the warning level); faces enrolled before quality was
  stored are counted in a note, not judged.

Every finding names face ids and scores. The audit reads an in-memory snapshot of the
index; it never touches the database.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from app.gallery.population import Population, identity_scores
from faces.model_contract import Aggregation

#: Faces listed per identity in one duplicate finding (the best-matching first).
MAX_FACES_LISTED = 10

QUALITY_NOT_STORED = (
    "Face quality was not given to this audit, so faces under today's enrolment floor "
    "are not listed."
)


@dataclass(frozen=True)
class FaceScore:
    """One face and its identity score against the other identity of a finding."""

    face_id: str
    score: float


@dataclass(frozen=True)
class DuplicateFinding:
    """Identities ``identity`` and ``other`` look like one person: ``faces`` of the first
    match the second and ``other_faces`` match the first (scores against the other
    identity); ``score``: the median of those scores. Action: merge ``merge_from`` into
    ``merge_into``."""

    identity: str
    other: str
    score: float
    faces: list[FaceScore]
    other_faces: list[FaceScore]
    faces_matching: int
    faces_total: int
    other_faces_matching: int
    other_faces_total: int
    merge_from: str
    merge_into: str


@dataclass(frozen=True)
class MisfiledFinding:
    """Face ``face_id`` of ``identity`` scores ``own_score`` against its identity's other
    faces (under the threshold) and ``other_score`` against ``move_to``. Action: move it."""

    face_id: str
    identity: str
    own_score: float
    move_to: str
    other_score: float


@dataclass(frozen=True)
class LowQualityFinding:
    """Face ``face_id`` of ``identity`` has quality ``quality``, under ``floor``."""

    face_id: str
    identity: str
    quality: float


@dataclass(frozen=True)
class AuditReport:
    """What the audit found in one gallery at ``threshold``."""

    threshold: float
    aggregation: str
    identities: int
    faces: int
    duplicates: list[DuplicateFinding]
    misfiled: list[MisfiledFinding]
    below_floor: list[LowQualityFinding] | None
    enroll_floor: float | None
    seconds: float
    notes: list[str] = field(default_factory=list)


def audit(
    population: Population,
    threshold: float,
    aggregation: Aggregation,
    quality: Mapping[str, float] | None = None,
    enroll_floor: float | None = None,
) -> AuditReport:
    """Audit ``population`` at ``threshold`` (scores as ``aggregation`` makes them);
    ``quality`` (face id → quality score at enrolment, as the gallery stores it), when
    given, lists the faces under ``enroll_floor``, weakest first."""
    t0 = time.perf_counter()
    pair_faces: list[np.ndarray] = []  # face rows matching another identity
    pair_codes: list[np.ndarray] = []  # … which identity
    pair_scores: list[np.ndarray] = []
    own = np.full(population.faces, np.nan)
    best_other = np.full(population.faces, -np.inf)
    best_code = np.zeros(population.faces, dtype=np.int64)
    for block in identity_scores(population, aggregation):
        rows, cols = np.nonzero(block.scores >= threshold)
        pair_faces.append(block.rows[rows])
        pair_codes.append(cols)
        pair_scores.append(block.scores[rows, cols])
        own[block.rows] = block.own
        if population.identities > 1:
            best = np.argmax(block.scores, axis=1)
            best_code[block.rows] = best
            best_other[block.rows] = block.scores[np.arange(len(best)), best]
    misfiled_rows = np.flatnonzero(
        np.isfinite(own) & (own < threshold) & (best_other >= threshold) & (best_other > own)
    )
    misfiled = [
        MisfiledFinding(
            population.face_ids[r],
            population.names[population.codes[r]],
            round(float(own[r]), 4),
            population.names[best_code[r]],
            round(float(best_other[r]), 4),
        )
        for r in misfiled_rows.tolist()
    ]
    misfiled.sort(key=lambda f: (-(f.other_score - f.own_score), f.face_id))
    faces = np.concatenate(pair_faces) if pair_faces else np.zeros(0, np.int64)
    codes = np.concatenate(pair_codes) if pair_codes else np.zeros(0, np.int64)
    scores = np.concatenate(pair_scores) if pair_scores else np.zeros(0)
    duplicates = _duplicates(population, faces, codes, scores, set(misfiled_rows.tolist()))
    below_floor: list[LowQualityFinding] | None = None
    notes: list[str] = []
    if quality is None or enroll_floor is None:
        notes.append(QUALITY_NOT_STORED)
    else:
        below_floor = [
            LowQualityFinding(face_id, population.names[code], round(quality[face_id], 4))
            for face_id, code in zip(population.face_ids, population.codes.tolist(), strict=True)
            if face_id in quality and quality[face_id] < enroll_floor
        ]
        below_floor.sort(key=lambda f: (f.quality, f.face_id))
        unjudged = sum(1 for face_id in population.face_ids if face_id not in quality)
        if unjudged:
            notes.append(
                f"{unjudged} of {population.faces} faces have no stored quality (enrolled "
                "before schema 5, imported or re-embedded) and are not judged against the floor."
            )
    return AuditReport(
        threshold=round(float(threshold), 6),
        aggregation=aggregation,
        identities=population.identities,
        faces=population.faces,
        duplicates=duplicates,
        misfiled=misfiled,
        below_floor=below_floor,
        enroll_floor=enroll_floor,
        seconds=round(time.perf_counter() - t0, 3),
        notes=notes,
    )


def _duplicates(
    population: Population,
    faces: np.ndarray,
    codes: np.ndarray,
    scores: np.ndarray,
    misfiled: set[int],
) -> list[DuplicateFinding]:
    """Identity pairs where at least half of each side's faces (misfiled faces left out)
    match the other side."""
    keep = ~np.isin(faces, np.fromiter(misfiled, dtype=np.int64, count=len(misfiled)))
    faces, codes, scores = faces[keep], codes[keep], scores[keep]
    owners = population.codes[faces]
    counts = population.counts().astype(np.int64)
    settled = counts.copy()
    for row in misfiled:
        settled[population.codes[row]] -= 1
    m = population.identities
    pair_key = owners * m + codes  # (owner → other), one entry per matching face
    keys, matching = np.unique(pair_key, return_counts=True)
    matches = dict(zip(keys.tolist(), matching.tolist(), strict=True))
    found: list[DuplicateFinding] = []
    for key, n_ab in matches.items():
        a, b = divmod(key, m)
        if a >= b:
            continue
        n_ba = matches.get(b * m + a, 0)
        if n_ba == 0 or 2 * n_ab < settled[a] or 2 * n_ba < settled[b]:
            continue
        listed_a = _listed(population, faces, scores, (owners == a) & (codes == b))
        listed_b = _listed(population, faces, scores, (owners == b) & (codes == a))
        both = [f.score for f in listed_a + listed_b]
        name_a, name_b = population.names[a], population.names[b]
        # merge the identity with fewer faces into the other (ties: by name)
        into_a = (counts[a], name_b) > (counts[b], name_a)
        found.append(
            DuplicateFinding(
                identity=name_a,
                other=name_b,
                score=round(float(np.median(both)), 4),
                faces=listed_a,
                other_faces=listed_b,
                faces_matching=n_ab,
                faces_total=int(counts[a]),
                other_faces_matching=n_ba,
                other_faces_total=int(counts[b]),
                merge_from=name_b if into_a else name_a,
                merge_into=name_a if into_a else name_b,
            )
        )
    found.sort(key=lambda d: (-d.score, d.identity, d.other))
    return found


def _listed(
    population: Population, faces: np.ndarray, scores: np.ndarray, mask: np.ndarray
) -> list[FaceScore]:
    rows, values = faces[mask], scores[mask]
    order = np.argsort(-values, kind="stable")[:MAX_FACES_LISTED]
    return [
        FaceScore(population.face_ids[int(rows[i])], round(float(values[i]), 4))
        for i in order.tolist()
    ]
