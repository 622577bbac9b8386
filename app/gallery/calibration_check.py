"""Does the promised FPIR hold on the enrolled people? Measured on the gallery itself.

The identification threshold holds the target FPIR (the share of strangers named as
someone) on the model card's validation people (``faces.open_set``). A deployment's people
may differ (children, groups under-represented in public data) and their impostor scores
may run higher. The gallery holds the evidence: every pair of enrolled identities is a pair
of strangers. Leave one identity out and it *is* a stranger to the rest, so each of its
faces is one stranger search against a gallery of the other ``N - 1`` identities, scored
the way ``/identify`` scores (``app.gallery.population``): the face is *named* when its
best identity score reaches the threshold.

**Estimate.** Identity ``i``'s named share ``r_i`` (of its faces); the FPIR estimate is
the mean of ``r_i`` over the ``N`` identities (each stranger counts once, however many
photos they have). Its 95 % interval is Wilson's score interval with ``n = N`` and
``x = Σ r_i``: a per-identity share in [0, 1] varies no more than a 0/1 outcome with the
same mean, so this is at least as wide as the interval of ``N`` independent strangers
(conservative where faces of one person agree). Two comparisons of the same pair of people
(``A`` as stranger to ``B`` and ``B`` to ``A``) are not independent; the interval ignores
that, which matters only when a few pairs dominate. The estimate is for ``N - 1``
comparisons per stranger and is scaled to ``N`` as ``1 - (1 - f)^(N / (N - 1))``.

**Verdict.** ``heavier_than_card`` when the interval's lower bound exceeds twice the
target (the tail is heavier than the card's with confidence: a warning is logged);
``ok`` otherwise; ``too_few_identities`` under ``min_identities(target)``: below it, even
no stranger named cannot rule out twice the target (Wilson's upper bound with ``x = 0``
is ``z² / (N + z²)``, under ``2 × target`` only from ``N ≥ z² / (2 × target)``: 193
identities at 1 %), so the check could never say ``ok`` with confidence.

**Deployment tail.** ``deployment_calibration`` fits the impostor tail the card ships
(``faces.open_set.fit_tail``) on the same leave-one-identity-out non-mated scores, once
there are ``min_identities`` identities *and* enough faces that the rate the threshold
needs is measured, not extrapolated: a stranger face yields ``N - 1`` non-mated scores and
the threshold sits at the rate ``≈ target / N`` per identity, so about ``faces × target``
scores lie above it; ``min_faces(target)`` asks for ``MIN_SCORES_ABOVE`` (10, the card
table's own last level) of them, i.e. ``10 / target`` faces (1,000 at 1 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.gallery.population import Population, identity_scores, sample_probes
from faces.model_contract import Aggregation, Calibration
from faces.open_set import fit_tail

CheckStatus = Literal["ok", "too_few_identities", "heavier_than_card"]

Z95 = 1.959964  # two-sided 95 %
MIN_SCORES_ABOVE = 10
#: Non-mated scores kept for a deployment tail fit, at most (probe faces are thinned).
MAX_FIT_SCORES = 20_000_000
FIT_MIN_SCORES = 1000  # fit_tail's own minimum
#: Probe faces × identities the check scores, at most (~10 s on 2 cores at 128-d); a
#: larger gallery is checked on a random share of its identities as strangers.
MAX_CHECK_PRODUCTS = 200_000_000


def min_identities(target_fpir: float) -> int:
    """Identities the check needs to be able to say ``ok`` (module docstring)."""
    return max(20, math.ceil(Z95**2 / (2.0 * target_fpir)))


def min_faces(target_fpir: float) -> int:
    """Faces a deployment tail needs so that ``MIN_SCORES_ABOVE`` non-mated scores lie
    above the threshold it sets (module docstring)."""
    return math.ceil(MIN_SCORES_ABOVE / target_fpir)


def wilson(successes: float, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion (``successes`` may be fractional)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(max(p * (1 - p) / trials + z * z / (4 * trials * trials), 0.0)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PopulationCheck:
    """The FPIR that ``threshold`` gives on the enrolled people (see the module)."""

    status: CheckStatus
    identities: int
    faces: int
    threshold: float
    target_fpir: float
    min_identities: int
    fpir: float | None = None
    fpir_low: float | None = None
    fpir_high: float | None = None
    strangers_named: int | None = None  # probe faces named as another identity
    strangers: int | None = None  # identities used as strangers (all but in huge galleries)

    @property
    def warn(self) -> bool:
        """Whether the estimate exceeds twice the target with confidence."""
        return self.status == "heavier_than_card"


def best_stranger_scores(population: Population, aggregation: Aggregation) -> np.ndarray:
    """Each face's best identity score against every *other* identity (NaN for faces
    not used as probes: a very large gallery is checked on a random share of its
    identities, ``MAX_CHECK_PRODUCTS``)."""
    best = np.full(population.faces, np.nan)
    if population.identities < 2:
        return best
    probes = sample_probes(population, MAX_CHECK_PRODUCTS)
    for block in identity_scores(population, aggregation, probes):
        best[block.rows] = block.scores.max(axis=1)
    return best


def check(
    population: Population,
    threshold: float,
    target_fpir: float,
    aggregation: Aggregation,
    best: np.ndarray | None = None,
) -> PopulationCheck:
    """The check on ``population`` at ``threshold`` (``best``: precomputed
    ``best_stranger_scores``)."""
    n, need = population.identities, min_identities(target_fpir)
    base = PopulationCheck(
        "too_few_identities", n, population.faces, round(threshold, 6), target_fpir, need
    )
    if n < need:
        return base
    if best is None:
        best = best_stranger_scores(population, aggregation)
    probed = ~np.isnan(best)
    named = probed & (best >= threshold)
    probes_of = np.bincount(population.codes, weights=probed, minlength=n)
    named_of = np.bincount(population.codes, weights=named, minlength=n)
    strangers = probes_of > 0
    trials = int(strangers.sum())
    x = float((named_of[strangers] / probes_of[strangers]).sum())
    low, high = wilson(x, trials)
    scale = n / (n - 1)

    def to_n(f: float) -> float:  # from N - 1 comparisons per stranger to N
        return -math.expm1(scale * math.log1p(-min(f, 1.0 - 1e-12)))

    fpir, low, high = to_n(x / trials), to_n(low), to_n(high)
    status: CheckStatus = "heavier_than_card" if low > 2.0 * target_fpir else "ok"
    return PopulationCheck(
        status,
        n,
        population.faces,
        round(threshold, 6),
        target_fpir,
        need,
        round(fpir, 6),
        round(low, 6),
        round(high, 6),
        int(named.sum()),
        trials,
    )


def deployment_calibration(
    population: Population, aggregation: Aggregation, target_fpir: float, source: str
) -> Calibration | None:
    """An impostor tail fitted on the enrolled people's own non-mated scores, or None
    while the gallery is under ``min_identities`` / ``min_faces`` (module docstring)."""
    n = population.identities
    if n < min_identities(target_fpir) or population.faces < min_faces(target_fpir):
        return None
    kept = [
        block.scores[np.isfinite(block.scores)].astype(np.float32)
        for block in identity_scores(
            population, aggregation, sample_probes(population, MAX_FIT_SCORES)
        )
    ]
    scores = np.concatenate(kept)
    if len(scores) < FIT_MIN_SCORES:
        return None
    templates = max(1, round(population.faces / n))
    tail = fit_tail(scores, templates=templates, min_count=MIN_SCORES_ABOVE)
    return Calibration(aggregation=aggregation, tails=[tail], source=source)
