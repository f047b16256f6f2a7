"""The statistics of a readout that is looked at again and again (issue 11).

Three families, each with its reference in docs/lift.md:

- **Always-valid intervals** for the difference of two conversion rates: the
  asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and
  Ramdas, "Time-uniform central limit theory and asymptotic confidence
  sequences" (Annals of Statistics, 2024), Theorem 2.2 (the Gaussian-mixture
  boundary), with its always-valid p-value. GrowthBook's gbstats and Eppo use
  the same boundary.
- **Multiple comparisons**: Holm's step-down (family-wise error) and
  Benjamini–Hochberg's step-up (false discovery rate) adjusted p-values.
- **Bayesian view**: with independent Beta posteriors per arm, the chance that
  the variant beats the holdout and the expected loss of shipping it, both in
  closed form (Evan Miller, "Formulas for Bayesian A/B testing", 2015; Chris
  Stucchio, "Bayesian A/B testing at VWO", 2015); for a mean such as revenue
  per visitor, the same two figures from a normal posterior of the difference
  (flat prior), as GrowthBook's gbstats computes them.

Pure functions of counts, standard library only: the CLI imports them for
every readout, whatever the number of records behind the counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

ALPHA = 0.05
# The number of visitors (both arms) at which the confidence sequence is made
# tightest. A readout of a few thousand visitors is the usual case here; the
# width depends on this only weakly (within ~10 % over a factor of 10).
T_STAR = 5000


def tuning(alpha: float = ALPHA, t_star: float = T_STAR) -> float:
    """rho of the Gaussian-mixture boundary that minimises the width at ``t_star`` (Waudby-Smith et al., eq. 13)."""
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / t_star)


def rate_variance(x: int, n: int) -> float:
    """Per-visitor variance of one arm's conversion: the plug-in p(1 - p), except at 0 % or 100 %.

    There the plug-in is 0 and the interval would shrink to a point ([0, 0] when
    both arms have no conversion) that no number of visitors supports; the rate
    in the variance alone becomes (x + 1) / (n + 2), one success and one failure
    added (Agresti and Caffo, The American Statistician, 2000). Rates strictly
    between keep the plug-in, so their figures do not change.
    """
    p = (x + 1) / (n + 2) if x in (0, n) else x / n
    return p * (1 - p)


def variance_of_difference(x1: int, n1: int, x0: int, n0: int) -> float:
    return rate_variance(x1, n1) / n1 + rate_variance(x0, n0) / n0


def sequential_difference(x1: int, n1: int, x0: int, n0: int, alpha: float = ALPHA,
                          t_star: float = T_STAR) -> tuple[float, float, float]:
    """p1 - p0 with its always-valid (1 - alpha) interval: (difference, low, high).

    The interval holds at every sample size at once, so looking at it daily
    does not inflate its error rate. With t = n1 + n0 visitors and the plug-in
    variance V of the difference, the half-width is
    sqrt(V t) * sqrt(2 (t rho^2 + 1) / (t^2 rho^2) * log(sqrt(t rho^2 + 1) / alpha)),
    its ends clipped to [-1, 1] (:func:`within_rates`).
    """
    difference, low, high = sequential_interval(x1 / n1 - x0 / n0, variance_of_difference(x1, n1, x0, n0),
                                                n1 + n0, alpha, t_star)
    return (difference, *within_rates(low, high))


def within_rates(low: float, high: float) -> tuple[float, float]:
    """An interval of a difference of two rates, its ends clipped to [-1, 1], where the difference lies.

    At a handful of visitors the normal boundary reaches past +-100 pp; clipping
    only drops values the true difference cannot take, so coverage is kept.
    """
    return max(-1.0, low), min(1.0, high)


def sequential_interval(difference: float, variance: float, t: int, alpha: float = ALPHA,
                        t_star: float = T_STAR) -> tuple[float, float, float]:
    """Any difference of two arms' means (rates, revenue per visitor, CUPED-adjusted) with its variance
    ``variance`` and ``t`` units in both arms: (difference, low, high), always valid."""
    half = half_width(variance, t, alpha, tuning(alpha, t_star))
    return difference, difference - half, difference + half


def sequential_p(difference: float, variance: float, t: int, alpha: float = ALPHA, t_star: float = T_STAR) -> float:
    """The always-valid p-value of :func:`sequential_interval` (see :func:`sequential_p_value`)."""
    if variance <= 0:
        return 1.0 if difference == 0 else 0.0
    r2 = tuning(alpha, t_star) ** 2
    exponent = -(difference * difference) * t * t * r2 / (2 * variance * t * (t * r2 + 1))
    return min(1.0, math.sqrt(t * r2 + 1) * math.exp(exponent))


def half_width(variance: float, t: int, alpha: float, rho: float) -> float:
    r2 = rho * rho
    boundary = 2 * (t * r2 + 1) / (t * t * r2) * math.log(math.sqrt(t * r2 + 1) / alpha)
    return math.sqrt(variance * t) * math.sqrt(boundary)


def sequential_p_value(x1: int, n1: int, x0: int, n0: int, alpha: float = ALPHA, t_star: float = T_STAR) -> float:
    """The smallest level at which the confidence sequence excludes no difference (same rho as the interval).

    Solving |d| = half-width for alpha: p = sqrt(t rho^2 + 1) * exp(-d^2 t^2 rho^2 / (2 V t (t rho^2 + 1))).
    """
    return sequential_p(x1 / n1 - x0 / n0, variance_of_difference(x1, n1, x0, n0), n1 + n0, alpha, t_star)


# ------------------------------------------------------------------ multiple comparisons

CORRECTIONS = ("holm", "bh", "none")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg step-up adjusted p-values (false discovery rate), in the input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    adjusted = [0.0] * m
    running = 1.0
    for position, i in enumerate(order):
        rank = m - position  # 1-based rank in ascending order
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = min(1.0, running)
    return adjusted


def adjust(p_values: Sequence[float], correction: str) -> list[float]:
    if correction == "holm":
        return holm(p_values)
    if correction == "bh":
        return benjamini_hochberg(p_values)
    if correction == "none":
        return list(p_values)
    raise ValueError(f"unknown correction {correction!r}: one of {', '.join(CORRECTIONS)}")


# ------------------------------------------------------------------ Bayesian view

PRIOR = (1, 1)  # Beta(1, 1): uniform on the rate; integers keep the formulas closed


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _chance_greater(a_b: int, b_b: int, a_a: int, b_a: int) -> float:
    """P(X_B > X_A) for X_B ~ Beta(a_b, b_b), X_A ~ Beta(a_a, b_a), a_b an integer (Evan Miller's sum)."""
    base = _log_beta(a_a, b_a)
    total = 0.0
    for i in range(a_b):
        total += math.exp(_log_beta(a_a + i, b_a + b_b) - math.log(b_b + i) - _log_beta(1 + i, b_b) - base)
    return min(1.0, max(0.0, total))


def chance_to_beat(x1: int, n1: int, x0: int, n0: int, prior: tuple[int, int] = PRIOR) -> float:
    """P(treatment rate > holdout rate) under independent Beta posteriors."""
    return _greater(prior[0] + x1, prior[1] + n1 - x1, prior[0] + x0, prior[1] + n0 - x0)


def expected_loss(x1: int, n1: int, x0: int, n0: int, prior: tuple[int, int] = PRIOR) -> float:
    """E[max(p_holdout - p_treatment, 0)]: the rate given up, on average, by shipping the variant.

    Stucchio's closed form: E[max(q - p, 0)] = E[q] P(q' > p) - E[p] P(q > p'), where
    q' ~ Beta(a0 + 1, b0) and p' ~ Beta(a1 + 1, b1) are the size-biased posteriors.
    """
    a1, b1 = prior[0] + x1, prior[1] + n1 - x1
    a0, b0 = prior[0] + x0, prior[1] + n0 - x0
    mean0, mean1 = a0 / (a0 + b0), a1 / (a1 + b1)
    loss = mean0 * _greater(a0 + 1, b0, a1, b1) - mean1 * _greater(a0, b0, a1 + 1, b1)
    return max(0.0, loss)


def _greater(a_b: int, b_b: int, a_a: int, b_a: int) -> float:
    """P(X_B > X_A), summing over whichever first shape parameter is smaller (the sum has that many terms)."""
    if a_b <= a_a:
        return _chance_greater(a_b, b_b, a_a, b_a)
    return 1.0 - _chance_greater(a_a, b_a, a_b, b_b)


def normal_chance_and_loss(difference: float, variance: float) -> tuple[float, float]:
    """(P(delta > 0), E[max(-delta, 0)]) for the posterior delta ~ N(difference, variance).

    The normal approximation for a difference of means (revenue per visitor): a
    flat (improper) prior on delta, so the posterior is the sampling distribution
    of the observed difference. The loss is the closed form of the normal's
    partial expectation: sigma phi(d / sigma) - d Phi(-d / sigma).
    """
    if variance <= 0:
        return (1.0 if difference > 0 else 0.0 if difference < 0 else 0.5), max(0.0, -difference)
    sigma = math.sqrt(variance)
    z = difference / sigma
    unit = NormalDist()
    return 1.0 - unit.cdf(-z), max(0.0, sigma * unit.pdf(z) - difference * unit.cdf(-z))
