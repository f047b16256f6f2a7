"""How many visitors and days an experiment needs (issue 11, planning).

The readout calls a variant helping when its always-valid interval excludes
zero (``readout.sequential_difference``), so the plan sizes for that interval,
not for a fixed-horizon test: the smallest number of visitors ``t`` (both arms)
at which a true lift of ``mde`` is detected with probability ``power``:

    mde >= half_width(t) + z_power * sqrt(V(t))

with ``V(t) = p(1-p)/(t(1-h)) + p(1-p)/(t h)`` for ``p`` the baseline rate plus
half the lift and holdout share ``h``. One comparison, this size has the power it
promises (computed exactly over the binomial outcomes: 90.1 % at a planned 90 % for
a 10 % baseline and 3 points). But the readout corrects its p-values across its
rows (Holm, every variant's conversion and revenue test: :func:`.lift.readout_rows`),
so a variant in a readout of ``m`` tests must clear ``alpha / m`` when it is the
only one with an effect: ``comparisons = m`` sizes for that level (Bonferroni, the
first and strictest step of Holm's). The boundary keeps the readout's rho, which
is tuned for ``alpha`` whatever the correction. The fixed-horizon size,
(z_{1-alpha/2m} + z_power)^2 V(1) / mde^2, is given beside it for comparison.
Stopping early is allowed by the readout; the plan says how long to expect, not
when to stop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from . import readout

MAX_VISITORS = 10**10


@dataclass
class Plan:
    slot: str
    baseline: float  # conversion rate without the variant
    daily_visitors: float  # visitors a day entering the slot's experiment (both arms)
    holdout_share: float
    mde: float  # absolute, in rate units (0.01 = 1 percentage point)
    power: float
    visitors: int | None  # both arms, for the always-valid readout; None: beyond reach
    visitors_fixed_horizon: int | None
    days: float | None
    seen_visitors: int = 0  # already in the experiment, from the records
    progress: float | None = None  # seen / needed
    comparisons: int = 1  # tests the readout corrects across (Holm): sized for alpha / comparisons

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _variance(p: float, h: float, t: float) -> float:
    q = p * (1 - p)
    return q / (t * (1 - h)) + q / (t * h)


def visitors_needed(baseline: float, mde: float, holdout_share: float, power: float = 0.8,
                    alpha: float = readout.ALPHA, comparisons: int = 1) -> int | None:
    """Visitors (both arms) for the always-valid readout to detect ``mde`` among ``comparisons`` corrected
    tests; None beyond 10^10."""
    _check(baseline, mde, holdout_share, power, comparisons)
    z_power = NormalDist().inv_cdf(power)
    rho = readout.tuning(alpha)  # the readout's, whatever level the correction asks for
    level = alpha / comparisons
    p = baseline + mde / 2  # the variance between the two arms' rates

    def detects(t: int) -> bool:
        variance = _variance(p, holdout_share, t)
        half = readout.half_width(variance, t, level, rho)
        return mde >= half + z_power * math.sqrt(variance)

    if not detects(MAX_VISITORS):
        return None
    low, high = 1, MAX_VISITORS  # detects() is monotone in t: bisect
    while low < high:
        middle = (low + high) // 2
        if detects(middle):
            high = middle
        else:
            low = middle + 1
    return low


def visitors_fixed_horizon(baseline: float, mde: float, holdout_share: float, power: float = 0.8,
                           alpha: float = readout.ALPHA, comparisons: int = 1) -> int:
    _check(baseline, mde, holdout_share, power, comparisons)
    z = NormalDist().inv_cdf(1 - alpha / (2 * comparisons)) + NormalDist().inv_cdf(power)
    return math.ceil(z * z * _variance(baseline + mde / 2, holdout_share, 1.0) / (mde * mde))


def _check(baseline: float, mde: float, holdout_share: float, power: float, comparisons: int = 1) -> None:
    if not 0 < baseline < 1:
        raise ValueError(f"the baseline rate must be between 0 and 1, not {baseline}")
    if not 0 < mde < 1 - baseline:
        raise ValueError(f"the minimum detectable effect must be above 0 and leave a rate below 1, not {mde}")
    if not 0 < holdout_share < 1:
        raise ValueError(f"the holdout share must be between 0 and 1, not {holdout_share}")
    if not 0.5 <= power < 1:
        raise ValueError(f"power must be at least 0.5 and below 1, not {power}")
    if comparisons < 1:
        raise ValueError(f"the number of comparisons must be at least 1, not {comparisons}")


def plan(slot: str, *, baseline: float, daily_visitors: float, holdout_share: float, mde: float,
         power: float = 0.8, seen_visitors: int = 0, comparisons: int = 1) -> Plan:
    needed = visitors_needed(baseline, mde, holdout_share, power, comparisons=comparisons)
    days = needed / daily_visitors if needed is not None and daily_visitors > 0 else None
    return Plan(slot, baseline, daily_visitors, holdout_share, mde, power, needed,
                visitors_fixed_horizon(baseline, mde, holdout_share, power, comparisons=comparisons), days,
                seen_visitors, min(1.0, seen_visitors / needed) if needed else None, comparisons)


def plans_for(found: Mapping[str, tuple[float, float, int]], share: Callable[[str], float], *,
              mde: float | None = None, relative_mde: float | None = None,
              power: float = 0.8, comparisons: int = 1) -> tuple[list[Plan], list[str]]:
    """A plan per slot of ``found`` (slot -> baseline, visitors a day, visitors so far, as :func:`observed`
    gives), sized for ``mde`` percentage points (default 1) or ``relative_mde`` of the baseline among
    ``comparisons`` corrected tests; and the slots that cannot be planned yet, each with the reason."""
    made, skipped = [], []
    for slot, (baseline, daily, seen) in sorted(found.items()):
        if not 0 < baseline < 1:
            skipped.append(f"{slot}: the holdout has a conversion rate of {baseline:.0%} so far")
            continue
        points = 1.0 if mde is None else mde  # an --mde of 0 is refused below, not read as the default
        effect = baseline * relative_mde if relative_mde is not None else points / 100
        made.append(plan(slot, baseline=baseline, daily_visitors=daily, holdout_share=share(slot), mde=effect,
                         power=power, seen_visitors=seen, comparisons=comparisons))
    return made, skipped


def observed(con: Any, *, window_days: float = 30.0, goal: str | None = None,
             recent_days: float = 14.0) -> dict[str, tuple[float, float, int]]:
    """Per slot, from the records: (holdout conversion rate, visitors a day entering lately, visitors so far).

    The baseline is the holdout arm's rate (what the slot's visitors do without
    the variants). The traffic is first exposures per day over the last
    ``recent_days`` of the records (or their whole span, if shorter, and at
    least a day).
    """
    from .lift import outcomes_sql

    rates: dict[str, list[int]] = {}
    for (slot, _variant), out in outcomes_sql(con, window_days=window_days, goal=goal).items():
        counts = rates.setdefault(slot, [0, 0])
        counts[0] += out.holdout.converted
        counts[1] += out.holdout.visitors
    rows = con.execute("""
        WITH first AS (SELECT slot, visitor, min(ts) AS ts FROM touchpoints
                       WHERE type = 'exposure' AND visitor IS NOT NULL AND arm IN ('treatment', 'holdout')
                       GROUP BY slot, visitor),
             bounds AS (SELECT min(ts) AS lo, max(ts) AS hi FROM first)
        SELECT slot, count(*),
               count(*) FILTER (WHERE epoch(hi) - epoch(ts) <= $days * 86400),
               greatest(1.0, least($days, (epoch(any_value(hi)) - epoch(any_value(lo))) / 86400.0))
        FROM first, bounds GROUP BY slot""", {"days": float(recent_days)}).fetchall()
    result = {}
    for slot, total, recent, span_days in rows:
        conv, n = rates.get(slot, [0, 0])
        result[slot] = (conv / n if n else 0.0, recent / float(span_days), int(total))
    return result
