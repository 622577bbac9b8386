"""Open-set identification: the cosine threshold that holds a stranger-alarm rate.

A stranger (a probe of nobody enrolled) is compared with all ``N`` enrolled identities;
they are named as someone when the best identity score reaches the threshold ``τ``. If
``p(τ)`` is the chance that one non-mated identity scores ``≥ τ`` (the card's impostor
tail for that many faces per identity), and the ``N`` comparisons are treated as
independent,

    FPIR(τ, N) = 1 − (1 − p(τ))^N,

so holding FPIR at a target ``α`` needs ``p(τ) = 1 − (1 − α)^(1/N)``, about ``α / N``.
``threshold_for_fpir`` inverts the tail at that ``p``: by log-linear interpolation of the
measured tail while it has data, and through its generalised Pareto fit beyond.
``training.calibrate`` measures how close the achieved FPIR stays to ``α`` on
identity-disjoint galleries (docs/MODEL.md).
"""

from __future__ import annotations

import math

import numpy as np

from faces.model_contract import Calibration, ImpostorTail


def per_identity_rate(target_fpir: float, identities: int) -> float:
    """``p`` such that ``identities`` independent comparisons give ``target_fpir``."""
    if not 0.0 < target_fpir < 1.0:
        raise ValueError(f"target FPIR must be in (0, 1), got {target_fpir}")
    n = max(1, identities)
    return -math.expm1(math.log1p(-target_fpir) / n)


def tail_exceedance(tail: ImpostorTail, score: float) -> float:
    """P(non-mated identity score ≥ ``score``) from the tail (table, then Pareto fit)."""
    if score <= tail.gpd_threshold:
        scores = np.asarray(tail.scores)
        logs = np.log(np.asarray(tail.exceedance))
        return float(np.exp(np.interp(score, scores, logs)))
    z = (score - tail.gpd_threshold) / tail.gpd_scale
    if abs(tail.gpd_shape) < 1e-9:
        return tail.gpd_exceedance * math.exp(-z)
    base = 1.0 + tail.gpd_shape * z
    if base <= 0.0:  # beyond the fitted distribution's upper end point
        return 0.0
    return tail.gpd_exceedance * base ** (-1.0 / tail.gpd_shape)


def tail_quantile(tail: ImpostorTail, rate: float) -> float:
    """The score ``τ`` with ``P(non-mated identity score ≥ τ) = rate``."""
    if rate >= tail.gpd_exceedance:
        # -log(exceedance) rises with the score: interpolate the score against it
        neg_log = -np.log(np.asarray(tail.exceedance))
        return float(np.interp(-math.log(rate), neg_log, np.asarray(tail.scores)))
    ratio = rate / tail.gpd_exceedance
    if abs(tail.gpd_shape) < 1e-9:
        return tail.gpd_threshold - tail.gpd_scale * math.log(ratio)
    return tail.gpd_threshold + tail.gpd_scale / tail.gpd_shape * (ratio**-tail.gpd_shape - 1.0)


def threshold_for_fpir(
    calibration: Calibration, target_fpir: float, identities: int, faces_per_identity: float
) -> float:
    """Cosine threshold holding FPIR at ``target_fpir`` for a gallery of ``identities``
    identities with ``faces_per_identity`` faces each on average (clamped to [-1, 1]).

    The card holds tails for a few template counts; a gallery between two of them gets
    the threshold interpolated between theirs.
    """
    rate = per_identity_rate(target_fpir, identities)
    tails = sorted(calibration.tails, key=lambda t: t.templates)
    counts = [t.templates for t in tails]
    thresholds = [tail_quantile(t, rate) for t in tails]
    t = float(faces_per_identity) if faces_per_identity > 0 else float(counts[0])
    value = float(np.interp(t, counts, thresholds))
    return min(1.0, max(-1.0, value))


# The Pareto shape is never taken below this: a shape ξ < 0 says the tail ends at
# σ/|ξ| past the fit's threshold, and the data cannot support an end much closer than
# ten local scales (docs/MODEL.md, "Open-set calibration", compares the alternatives).
MIN_GPD_SHAPE = -0.1


def fit_tail(
    scores: np.ndarray,
    templates: int,
    gpd_fraction: float = 1e-3,
    min_count: int = 10,
    min_shape: float = MIN_GPD_SHAPE,
) -> ImpostorTail:
    """An ``ImpostorTail`` from a large sample of non-mated identity scores.

    The table keeps the measured exceedance at log-spaced levels from 50 % down to where
    ``min_count`` scores remain. Beyond it the tail decays as a generalised Pareto
    distribution fitted (probability-weighted moments, Hosking & Wallis 1987) to the top
    ``gpd_fraction`` of the sample, with its shape ``ξ`` floored at ``min_shape``.
    Impostor cosine scores are bounded, so their fitted shape is negative (−0.09 to −0.19
    on our validation people once label errors are removed); the floor keeps the
    extrapolation from ending the tail sooner than the data can show. Flooring at 0 (an
    exponential tail) over-states the tail (achieved FPIR 4× under a 0.1 % target at
    1,000 people); an unfloored fit follows a contaminated sample's lightest estimate.
    """
    x = np.sort(np.asarray(scores, dtype=np.float64))[::-1]  # descending
    n = len(x)
    if n < 1000:
        raise ValueError(f"need at least 1000 non-mated scores, got {n}")
    k = max(25, round(gpd_fraction * n))
    u = float(x[k])  # k scores lie above u
    asc = np.sort(x[:k] - u)
    b0 = float(asc.mean())
    b1 = float(np.mean(asc * (np.arange(k, dtype=np.float64) / (k - 1))))
    # PWM of (1 - F): a0 = b0, a1 = b0 - b1; Hosking & Wallis' k is minus our shape ξ,
    # with P(X > x) = (1 + ξ x / σ)^(-1/ξ)
    a0, a1 = b0, b0 - b1
    shape = -(a0 / (a0 - 2 * a1) - 2)
    scale = 2 * a0 * a1 / (a0 - 2 * a1)
    if not (np.isfinite(scale) and scale > 0):
        shape, scale = 0.0, max(b0, 1e-6)
    shape = max(min_shape, float(shape))

    levels = []
    level = 0.5
    while level * n >= min_count:
        levels.append(level)
        level /= 10**0.25
    levels.append(min_count / n)
    table_scores = [float(x[max(0, round(lv * n) - 1)]) for lv in levels]
    keep_s: list[float] = []
    keep_e: list[float] = []
    for sc, e in zip(table_scores, levels, strict=True):
        if keep_s and sc <= keep_s[-1]:  # ties: keep the rarer level
            keep_s[-1], keep_e[-1] = sc, e
            continue
        keep_s.append(sc)
        keep_e.append(e)
    if len(keep_s) < 2:
        keep_s, keep_e = [float(x[-1]), float(x[min_count - 1])], [1.0, min_count / n]
    end, end_rate = keep_s[-1], keep_e[-1]
    # the Pareto tail continues from the table's last point with the fit's local scale
    end_scale = max(scale + shape * max(0.0, end - u), 1e-6)
    return ImpostorTail(
        templates=templates,
        comparisons=n,
        scores=keep_s,
        exceedance=keep_e,
        gpd_threshold=end,
        gpd_exceedance=end_rate,
        gpd_shape=shape,
        gpd_scale=float(end_scale),
    )
