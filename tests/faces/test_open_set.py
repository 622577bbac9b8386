"""The open-set threshold: derived from the impostor tail for the gallery's size."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from faces.model_contract import Calibration
from faces.open_set import (
    MIN_GPD_SHAPE,
    fit_tail,
    per_identity_rate,
    tail_exceedance,
    tail_quantile,
    threshold_for_fpir,
)

SIGMA = 0.1


@pytest.fixture(scope="module")
def normal_calibration() -> Calibration:
    """Impostor identity scores ~ N(0, 0.1) for one face, N(0.03, 0.1) for three
    (more faces per identity, higher best score)."""
    rng = np.random.default_rng(1)
    one = fit_tail(rng.normal(0.0, SIGMA, 2_000_000), templates=1)
    three = fit_tail(rng.normal(0.03, SIGMA, 2_000_000), templates=3)
    return Calibration(aggregation="max", tails=[one, three])


def test_per_identity_rate_inverts_the_gallery_formula() -> None:
    for n in (1, 10, 1000, 10**6):
        p = per_identity_rate(0.01, n)
        assert -math.expm1(n * math.log1p(-p)) == pytest.approx(0.01, rel=1e-9)
    assert per_identity_rate(0.01, 0) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        per_identity_rate(0.0, 10)


def test_tail_table_and_pareto_fit_agree_with_the_sample(
    normal_calibration: Calibration,
) -> None:
    tail = normal_calibration.tails[0]
    # inside the table: the empirical exceedance of N(0, σ)
    for z in (0.5, 1.0, 2.0, 3.0):
        want = 0.5 * math.erfc(z / math.sqrt(2))
        assert tail_exceedance(tail, z * SIGMA) == pytest.approx(want, rel=0.1)
    # within the measured table: the true quantile
    got = tail_quantile(tail, 1e-5)
    assert got == pytest.approx(SIGMA * _normal_isf(1e-5), abs=0.005)
    # beyond the data (1e-7 of 2M scores is 0.2 of a score): the Pareto fit follows the
    # Gaussian's light tail closely, erring high rather than low
    for rate in (1e-6, 1e-7):
        got = tail_quantile(tail, rate)
        want = SIGMA * _normal_isf(rate)
        assert want - 0.005 <= got <= want + 0.06, rate
        assert tail_exceedance(tail, got) == pytest.approx(rate, rel=1e-6)


def test_pareto_shape_follows_the_data_but_never_ends_the_tail_early() -> None:
    rng = np.random.default_rng(2)
    # a bounded distribution (uniform: shape -1) is floored at MIN_GPD_SHAPE, so beyond
    # the data the threshold is above the true quantile (conservative), by a little
    bounded = fit_tail(rng.uniform(0.0, 1.0, 2_000_000), templates=1)
    assert bounded.gpd_shape == pytest.approx(MIN_GPD_SHAPE)
    assert 1.0 - 1e-7 < tail_quantile(bounded, 1e-7) < 1.02
    # a heavy (Pareto, shape +0.2) tail keeps its fitted shape, so its extrapolated
    # quantile is not under-stated the way an exponential would under-state it
    heavy = fit_tail(rng.pareto(5.0, 2_000_000), templates=1)
    assert heavy.gpd_shape == pytest.approx(0.2, abs=0.08)
    true_q = 1e-7 ** (-1 / 5.0) - 1.0
    assert tail_quantile(heavy, 1e-7) == pytest.approx(true_q, rel=0.4)
    # with no floor a sample whose shape is below it keeps the lighter estimate
    free = fit_tail(rng.uniform(0.0, 1.0, 2_000_000), templates=1, min_shape=-10.0)
    assert free.gpd_shape < -0.5
    assert tail_quantile(free, 1e-7) < tail_quantile(bounded, 1e-7)


def _normal_isf(p: float) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(mid / math.sqrt(2)) > p:
            lo = mid
        else:
            hi = mid
    return lo


def test_threshold_rises_with_gallery_size_and_faces_per_identity(
    normal_calibration: Calibration,
) -> None:
    sizes = [1, 10, 100, 1000, 100_000]
    thresholds = [threshold_for_fpir(normal_calibration, 0.01, n, 1) for n in sizes]
    assert all(a < b for a, b in itertools.pairwise(thresholds))
    assert threshold_for_fpir(normal_calibration, 0.01, 100, 3) > thresholds[2]
    two = threshold_for_fpir(normal_calibration, 0.01, 100, 2)
    assert thresholds[2] < two < threshold_for_fpir(normal_calibration, 0.01, 100, 3)
    # a stricter target needs a higher threshold
    assert threshold_for_fpir(normal_calibration, 0.001, 100, 1) > thresholds[2]


@pytest.mark.parametrize("identities", [10, 100, 1000])
def test_threshold_matches_a_brute_force_simulation(
    normal_calibration: Calibration, identities: int
) -> None:
    """Strangers against galleries of i.i.d. N(0, σ) impostor scores: the derived
    threshold names the targeted share of them."""
    rng = np.random.default_rng(identities)
    strangers = 4_000_000 // identities
    best = np.empty(strangers)
    for start in range(0, strangers, 2000):
        chunk = rng.normal(0.0, SIGMA, (min(2000, strangers - start), identities))
        best[start : start + len(chunk)] = chunk.max(axis=1)
    for target in (0.01, 0.1):
        threshold = threshold_for_fpir(normal_calibration, target, identities, 1)
        achieved = float(np.mean(best >= threshold))
        assert achieved == pytest.approx(target, rel=0.25), (target, achieved)
