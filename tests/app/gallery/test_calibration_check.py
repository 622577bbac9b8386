"""The calibration check on the enrolled people (``app.gallery.calibration_check``) on
synthetic galleries whose tails are known: a population drawn like the one the "card" was
fitted on is ``ok`` (estimate near the target), one whose strangers share a common
direction (a heavier impostor tail) is ``heavier_than_card``, a small one is
``too_few_identities``; the deployment tail fitted on the heavier people holds the target
on them where the card's does not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.gallery.calibration_check import (
    check,
    deployment_calibration,
    min_faces,
    min_identities,
    wilson,
)
from app.gallery.population import Population, identity_scores
from faces.model_contract import Calibration
from faces.open_set import fit_tail, threshold_for_fpir

DIM, FACES, TARGET = 48, 2, 0.05


def people(n: int, seed: int, common: float = 0.0) -> Population:
    """``n`` identities of ``FACES`` faces; ``common`` > 0 pulls every identity towards one
    shared direction, raising every non-mated score (a heavier tail)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    if common:
        shared = np.zeros(DIM)
        shared[0] = 1.0
        centres = centres + common * shared
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    faces = np.repeat(centres, FACES, axis=0) + 0.08 * rng.normal(size=(n * FACES, DIM))
    names = [f"id{i // FACES}" for i in range(n * FACES)]
    return Population.of([f"f{i}" for i in range(n * FACES)], names, faces)


@pytest.fixture(scope="module")
def card() -> Calibration:
    """The "model card": a tail fitted on 1,500 people drawn like ``people(…, common=0)``."""
    population = people(1500, seed=1)
    scores = np.concatenate(
        [b.scores[np.isfinite(b.scores)] for b in identity_scores(population, "centroid")]
    )
    return Calibration(aggregation="centroid", tails=[fit_tail(scores, templates=FACES)])


def _threshold(calibration: Calibration, population: Population) -> float:
    return threshold_for_fpir(
        calibration, TARGET, population.identities, population.faces / population.identities
    )


def test_people_like_the_cards_are_ok(card: Calibration) -> None:
    population = people(600, seed=2)
    found = check(population, _threshold(card, population), TARGET, "centroid")
    assert found.status == "ok"
    assert found.fpir is not None and found.fpir_low is not None and found.fpir_high is not None
    assert found.fpir_low <= TARGET <= found.fpir_high  # the interval covers the truth
    assert found.strangers == 600


def test_a_heavier_tail_is_found(card: Calibration) -> None:
    population = people(600, seed=3, common=0.5)
    found = check(population, _threshold(card, population), TARGET, "centroid")
    assert found.status == "heavier_than_card" and found.warn
    assert found.fpir_low is not None and found.fpir_low > 2 * TARGET


def test_too_few_identities_to_tell(card: Calibration) -> None:
    population = people(min_identities(TARGET) - 1, seed=4, common=0.5)
    found = check(population, _threshold(card, population), TARGET, "centroid")
    assert found.status == "too_few_identities" and found.fpir is None and not found.warn
    assert found.min_identities == 39


def test_the_deployment_tail_holds_the_target_on_its_own_people(card: Calibration) -> None:
    heavy = people(600, seed=5, common=0.5)
    own = deployment_calibration(heavy, "centroid", TARGET, "test")
    assert own is not None
    assert _threshold(own, heavy) > _threshold(card, heavy)
    fresh = people(600, seed=6, common=0.5)  # other people of the same population
    assert check(fresh, _threshold(own, fresh), TARGET, "centroid").status == "ok"
    assert check(fresh, _threshold(card, fresh), TARGET, "centroid").status == "heavier_than_card"
    small = people(min_identities(TARGET) + 5, seed=7, common=0.5)
    assert small.faces < min_faces(TARGET)
    assert deployment_calibration(small, "centroid", TARGET, "test") is None


def test_minimums_and_interval() -> None:
    assert min_identities(0.01) == 193 and min_identities(0.5) == 20
    assert min_faces(0.01) == 1000
    low, high = wilson(0, 193)
    assert low == 0.0 and high < 0.02  # no stranger named in 193 rules out 2 × 1 %
    low, high = wilson(10, 100)
    assert math.isclose(low, 0.0552, abs_tol=1e-3) and math.isclose(high, 0.1744, abs_tol=1e-3)
