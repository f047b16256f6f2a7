"""Causal lift of personalized variants: treatment against holdout.

Experiments (issue 4) write exposure records with ``arm``: ``treatment`` (the
variant was shown), ``holdout`` (the default was shown; ``variant`` names the
variant the visitor *would* have seen) or ``unenrolled`` (no visitor id: outside
the experiment). For each slot and variant this module compares the visitors of
the two arms: a visitor converts when a conversion record (optionally of one
goal) follows their first exposure to that variant within the window. The
arms are randomized, so the difference in conversion rates is the variant's
causal effect on the visitors it is chosen for, unlike the credit an
attribution model hands out.

Conversions in the same request as the exposure (same ``ts``) do not count: a
block rendered on the thank-you page cannot have caused the sign-up.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from . import readout
from .days import check_days

Z95 = 1.959963984540054  # two-sided 95 % normal quantile
SRM_ALPHA = 0.001        # the usual threshold: a real mismatch, not chance
ANY = "any"              # the metric of conversions of any goal
# Breakdowns: fields of the first exposure's record, fixed by the request before the variant was
# shown (so the treatment cannot move a visitor between cells).
BREAKDOWNS = ("channel", "device", "country")  # fields every record of schema 4 holds
SEGMENT = "segment"      # by the config's segments, evaluated at the first exposure (.segment_cells)
BY_CHOICES = (*BREAKDOWNS, SEGMENT)
Members = Mapping[tuple[str, str], Collection[str]]  # (experiment or slot, visitor) -> the cells they are in
NO_VALUE = "(none)"      # the cell of records without the field


# ------------------------------------------------------------------ statistics

def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (good at small n and near 0 or 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe_difference(x1: int, n1: int, x0: int, n0: int, z: float = Z95) -> tuple[float, float, float]:
    """p1 - p0 with Newcombe's hybrid score interval (method 10 of Newcombe 1998)."""
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = wilson_interval(x1, n1, z)
    l0, u0 = wilson_interval(x0, n0, z)
    d = p1 - p0
    return (d, *readout.within_rates(d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2),
                                     d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)))


def relative_lift(x1: int, n1: int, x0: int, n0: int, z: float = Z95) -> tuple[float, float, float] | None:
    """p1 / p0 - 1 with the log-ratio (Katz) interval; None without holdout conversions.

    A zero treatment count gets Haldane's +0.5 on both counts so that the
    interval stays finite, and its lower end is -100 %: no conversion is what
    a variant that stops every one would show, and the corrected ratio's low end
    (above -100 %) would leave the point estimate, -100 %, outside its own
    interval. A zero holdout rate has no ratio at all.
    """
    if x0 == 0 or n1 == 0 or n0 == 0:
        return None
    a, b = (x1, x0) if x1 > 0 else (x1 + 0.5, x0 + 0.5)
    m1, m0 = (n1, n0) if x1 > 0 else (n1 + 1, n0 + 1)
    ratio = (a / m1) / (b / m0)
    se = math.sqrt(1 / a - 1 / m1 + 1 / b - 1 / m0)
    point = (x1 / n1) / (x0 / n0) - 1
    low = ratio * math.exp(-z * se) - 1 if x1 > 0 else -1.0
    return (point, low, ratio * math.exp(z * se) - 1)


def two_proportion_p(x1: int, n1: int, x0: int, n0: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test."""
    pooled = (x1 + x0) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if se == 0:
        return 1.0
    z = (x1 / n1 - x0 / n0) / se
    return math.erfc(abs(z) / math.sqrt(2))


def srm_chi_square(n_treatment: int, n_holdout: int, holdout_share: float) -> tuple[float, float]:
    """Pearson chi-square (1 df) of the observed split against the configured one; (statistic, p)."""
    total = n_treatment + n_holdout
    expected_h = total * holdout_share
    expected_t = total - expected_h
    if total == 0 or expected_h <= 0 or expected_t <= 0:
        return (0.0, 1.0)
    stat = (n_holdout - expected_h) ** 2 / expected_h + (n_treatment - expected_t) ** 2 / expected_t
    return (stat, math.erfc(math.sqrt(stat / 2)))  # chi-square with 1 df: P(Z^2 > stat)


# ------------------------------------------------------------------ from records to outcomes

def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class ArmCounts:
    """Visitors and converters of one arm, and the sums the revenue and CUPED readouts need.

    Per visitor: ``y`` converted (0/1), ``r`` the value of their conversions in
    the window, ``x`` their pageviews *before* the first exposure (the CUPED
    covariate: measured before the treatment, so the treatment cannot move it).
    """
    visitors: int = 0
    converted: int = 0
    revenue: float = 0.0     # sum r
    revenue_sq: float = 0.0  # sum r^2
    pre: int = 0             # sum x
    pre_sq: int = 0          # sum x^2
    pre_converted: int = 0   # sum x*y

    def add(self, converted: bool, revenue: float, pre: int) -> None:
        self.visitors += 1
        self.converted += converted
        self.revenue += revenue
        self.revenue_sq += revenue * revenue
        self.pre += pre
        self.pre_sq += pre * pre
        self.pre_converted += pre * converted

    def merge(self, other: ArmCounts) -> None:
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Outcomes:
    """Per slot and variant, the experiment id and both arms' counts; with a breakdown, the same per cell;
    and the holdout shares the first exposures were assigned with (``holdout_share`` of schema 4; none in
    older records)."""
    experiment: str | None = None
    treatment: ArmCounts = field(default_factory=ArmCounts)
    holdout: ArmCounts = field(default_factory=ArmCounts)
    cells: dict[str, Outcomes] = field(default_factory=dict)  # breakdown value -> that cell's outcomes
    recorded_shares: set[float] = field(default_factory=set)

    def arm(self, arm: str) -> ArmCounts:
        return self.treatment if arm == "treatment" else self.holdout


def _check_by(by: str | None, members: Members | None) -> None:
    if by == SEGMENT and members is None:
        raise ValueError("a breakdown by segment needs each visitor's segments (segment_cells; --config)")
    if by is not None and by not in BY_CHOICES:
        raise ValueError(f"cannot break down by {by!r}: the records carry {', '.join(BREAKDOWNS)}; "
                         f"or {SEGMENT}, with the config's segments")


def outcomes(records: Iterable[Mapping[str, Any]], *, window_days: float = 30.0,
             goal: str | None = None, by: str | None = None,
             members: Members | None = None) -> dict[tuple[str, str], Outcomes]:
    """Count treatment and holdout visitors per (slot, variant), and who converted in the window.

    A visitor counts once per experiment (the slot's, when the records name
    none): under the variant and arm of their *first* exposure in it. Counting
    them again under a later variant would compare arms on a post-treatment
    subgroup: a variant that leads to the whitepaper makes more treated visitors
    eligible for the variant shown to whitepaper readers, and that variant's
    split would be off (a sample ratio mismatch the analysis made, not the
    assignment). Arms are sticky per visitor; a later switch, e.g. after a
    consent change, does not move them. Records without a visitor id are
    outside every experiment; a conversion with a user id and no visitor id
    (imported by ``personalize-mw import-conversions``) counts for each visitor
    an identify record links to that user.

    ``by`` (one of :data:`BREAKDOWNS`): each visitor also counts in the cell of
    their first exposure's value of that field (``cells``). ``by="segment"``: in each cell ``members``
    names for them (cells that overlap, and need not add up to the whole).
    """
    _check_by(by, members)
    # (experiment or slot, visitor) -> the first exposure: (ts, slot, variant, arm, experiment, cell, share)
    first: dict[tuple[str, str], tuple[datetime, str, str, str, str | None, str | None, float | None]] = {}
    conversions: dict[str, list[tuple[datetime, float]]] = {}
    pageviews: dict[str, list[datetime]] = {}
    linked: dict[str, set[str]] = {}  # user -> visitors, from identify records
    imported: list[tuple[str, datetime, float]] = []  # conversions with a user and no visitor
    for rec in records:
        visitor = rec.get("visitor")
        kind = rec.get("type")
        if not visitor:
            if kind == "conversion" and rec.get("user") and (goal is None or rec.get("goal") == goal):
                imported.append((rec["user"], parse_ts(rec["ts"]), float(rec.get("value") or 0.0)))
            continue
        if kind == "identify" and rec.get("user"):
            linked.setdefault(rec["user"], set()).add(visitor)
        if kind == "exposure" and rec.get("arm") in ("treatment", "holdout"):
            key = (rec.get("experiment") or rec["slot"], visitor)
            ts = parse_ts(rec["ts"])
            if key not in first or ts < first[key][0]:
                cell = (rec.get(by) or NO_VALUE) if by and by != SEGMENT else None
                first[key] = (ts, rec["slot"], rec["variant"], rec["arm"], rec.get("experiment"), cell,
                              rec.get("holdout_share"))
        elif kind == "conversion" and (goal is None or rec.get("goal") == goal):
            conversions.setdefault(visitor, []).append((parse_ts(rec["ts"]), float(rec.get("value") or 0.0)))
        elif kind == "pageview":
            pageviews.setdefault(visitor, []).append(parse_ts(rec["ts"]))
    for user, ts, value in imported:  # counted for each visitor linked to the user
        for linked_visitor in linked.get(user, ()):
            conversions.setdefault(linked_visitor, []).append((ts, value))
    window = timedelta(days=window_days)
    result: dict[tuple[str, str], Outcomes] = {}
    for (unit, visitor), (ts, slot, variant, arm, experiment, cell, share) in first.items():
        out = result.setdefault((slot, variant), Outcomes())
        out.experiment = out.experiment or experiment
        if share is not None:
            out.recorded_shares.add(float(share))
        counted = [value for c, value in conversions.get(visitor, ()) if ts < c <= ts + window]
        before = sum(1 for p in pageviews.get(visitor, ()) if p < ts)
        out.arm(arm).add(bool(counted), sum(counted), before)
        for name in [cell] if cell is not None else (members or {}).get((unit, visitor), ()):
            part = out.cells.setdefault(name, Outcomes())
            part.experiment = part.experiment or experiment
            if share is not None:
                part.recorded_shares.add(float(share))
            part.arm(arm).add(bool(counted), sum(counted), before)
    return result


# ------------------------------------------------------------------ the lift table

@dataclass
class LiftRow:
    slot: str
    variant: str
    experiment: str | None
    n_treatment: int
    conv_treatment: int
    n_holdout: int
    conv_holdout: int
    rate_treatment: float | None
    rate_holdout: float | None
    abs_lift: float | None = None
    abs_low: float | None = None
    abs_high: float | None = None
    rel_lift: float | None = None
    rel_low: float | None = None
    rel_high: float | None = None
    p_value: float | None = None        # fixed-horizon: valid for one look at a sample size set in advance
    seq_abs_low: float | None = None     # always-valid 95 % interval of abs_lift (readout.sequential_difference)
    seq_abs_high: float | None = None
    seq_p_value: float | None = None     # always-valid p-value
    p_adjusted: float | None = None      # seq_p_value corrected across the readout's rows (Holm or BH)
    chance_to_beat: float | None = None  # Bayesian: P(treatment rate > holdout rate), Beta(1, 1) priors
    expected_loss: float | None = None   # Bayesian: E[max(holdout rate - treatment rate, 0)]
    cuped_abs_lift: float | None = None  # abs_lift adjusted for pageviews before the first exposure (CUPED)
    cuped_abs_low: float | None = None   # its always-valid 95 % interval
    cuped_abs_high: float | None = None
    variance_reduction: float | None = None  # 1 - var(CUPED difference) / var(plain difference)
    revenue_treatment: float | None = None   # conversion value per visitor in the window
    revenue_holdout: float | None = None
    revenue_lift: float | None = None
    revenue_low: float | None = None     # always-valid 95 % interval of revenue_lift
    revenue_high: float | None = None
    revenue_p_value: float | None = None  # always-valid
    revenue_p_adjusted: float | None = None
    revenue_chance_to_beat: float | None = None  # Bayesian, normal approximation, flat prior on the difference
    revenue_expected_loss: float | None = None   # E[max(holdout - treatment revenue per visitor, 0)]
    holdout_share: float | None = None   # the configured share the split is checked against
    srm_chi2: float | None = None
    srm_p: float | None = None
    srm_p_adjusted: float | None = None  # srm_p corrected across the readout's rows, as p_adjusted is
    srm: bool = False                    # True: the split is off, the row cannot be trusted
    small_sample: bool = False
    warnings: list[str] = field(default_factory=list)
    credit: dict[str, float] = field(default_factory=dict)  # attribution model -> credit of slot:variant
    metric: str = ANY                    # the goal counted as a conversion, or "any"
    guardrail: bool | None = None        # a guardrail metric: True when it dropped; None: not a guardrail
    breakdown: dict[str, str] | None = None  # {"by": field, "value": its value}; None: all visitors
    same_as_whole: bool = False          # a cell holding all the variant's visitors: no test of its own

    @property
    def key(self) -> str:
        return f"{self.slot}:{self.variant}"

    @property
    def label(self) -> str:
        """``slot:variant``, and the breakdown cell (``channel=search``) for a cell's row."""
        if self.breakdown is None:
            return self.key
        return f"{self.key} {self.breakdown['by']}={self.breakdown['value']}"

    @property
    def small_cell(self) -> bool:
        """A breakdown cell too small to call: said to be small, never significant."""
        return self.small_sample and self.breakdown is not None

    @property
    def abs_interval(self) -> tuple[float, float, float] | None:
        """(lift, low, high) of the absolute lift; None without visitors in both arms."""
        if self.abs_lift is None or self.abs_low is None or self.abs_high is None:
            return None
        return self.abs_lift, self.abs_low, self.abs_high

    @property
    def rel_interval(self) -> tuple[float, float, float] | None:
        """(lift, low, high) of the relative lift; None without holdout conversions."""
        if self.rel_lift is None or self.rel_low is None or self.rel_high is None:
            return None
        return self.rel_lift, self.rel_low, self.rel_high

    @property
    def seq_interval(self) -> tuple[float, float, float] | None:
        """(lift, low, high) with the always-valid interval; None without visitors in both arms."""
        if self.abs_lift is None or self.seq_abs_low is None or self.seq_abs_high is None:
            return None
        return self.abs_lift, self.seq_abs_low, self.seq_abs_high

    @property
    def caused(self) -> tuple[float, float, float] | None:
        """Conversions the variant caused among the treated visitors: lift x treated, always-valid interval."""
        if (ci := self.seq_interval) is None:
            return None
        lift, low, high = ci
        return lift * self.n_treatment, low * self.n_treatment, high * self.n_treatment

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lift_row(slot: str, variant: str, out: Outcomes, *, holdout_share: float | None = None,
             min_sample: int = 100, metric: str = ANY, breakdown: dict[str, str] | None = None) -> LiftRow:
    t, h = out.treatment, out.holdout
    row = LiftRow(slot, variant, out.experiment, t.visitors, t.converted, h.visitors, h.converted,
                  t.converted / t.visitors if t.visitors else None,
                  h.converted / h.visitors if h.visitors else None, holdout_share=holdout_share,
                  metric=metric, breakdown=breakdown)
    if t.visitors and h.visitors:
        row.abs_lift, row.abs_low, row.abs_high = newcombe_difference(t.converted, t.visitors, h.converted, h.visitors)
        rel = relative_lift(t.converted, t.visitors, h.converted, h.visitors)
        if rel is not None:
            row.rel_lift, row.rel_low, row.rel_high = rel
        row.p_value = two_proportion_p(t.converted, t.visitors, h.converted, h.visitors)
        counts = (t.converted, t.visitors, h.converted, h.visitors)
        _, row.seq_abs_low, row.seq_abs_high = readout.sequential_difference(*counts)
        row.seq_p_value = readout.sequential_p_value(*counts)
        row.chance_to_beat = readout.chance_to_beat(*counts)
        row.expected_loss = readout.expected_loss(*counts)
        _cuped(row, t, h)
        _revenue(row, t, h)
    else:
        row.warnings.append("no holdout visitors" if t.visitors else "no treatment visitors")
    if holdout_share is not None:
        row.srm_chi2, row.srm_p = srm_chi_square(t.visitors, h.visitors, holdout_share)
    if min(t.visitors, h.visitors) < min_sample:
        row.small_sample = True
        row.warnings.append(f"small sample: fewer than {min_sample} visitors in an arm")
    return row


def _moments(n: int, total: float, total_sq: float) -> tuple[float, float]:
    """Mean and sample variance from a count, a sum and a sum of squares."""
    mean = total / n
    return mean, max(0.0, (total_sq - n * mean * mean) / (n - 1)) if n > 1 else 0.0


def _cuped(row: LiftRow, t: ArmCounts, h: ArmCounts) -> None:
    """Regression adjustment on the pre-exposure pageviews (Deng, Xu, Kohavi and Walker, WSDM 2013).

    theta = cov(y, x) / var(x) over both arms; each arm's rate becomes
    mean(y) - theta (mean_arm(x) - mean(x)), and its variance that of y - theta x.
    """
    n = t.visitors + h.visitors
    if n < 3:
        return
    mean_x = (t.pre + h.pre) / n
    mean_y = (t.converted + h.converted) / n
    var_x = ((t.pre_sq + h.pre_sq) - n * mean_x * mean_x) / (n - 1)
    cov = ((t.pre_converted + h.pre_converted) - n * mean_x * mean_y) / (n - 1)
    theta = cov / var_x if var_x > 0 else 0.0

    def arm(c: ArmCounts) -> tuple[float, float]:
        """(adjusted mean, variance of the adjusted per-visitor value / visitors)."""
        my, vy = _moments(c.visitors, c.converted, c.converted)
        if c.converted in (0, c.visitors):  # no spread in y: the floor of the plain interval (docs/lift.md)
            vy = readout.rate_variance(c.converted, c.visitors)
        mx, vx = _moments(c.visitors, c.pre, c.pre_sq)
        cxy = ((c.pre_converted - c.visitors * mx * my) / (c.visitors - 1)) if c.visitors > 1 else 0.0
        return my - theta * (mx - mean_x), max(0.0, vy + theta * theta * vx - 2 * theta * cxy) / c.visitors

    (m1, v1), (m0, v0) = arm(t), arm(h)
    plain = readout.variance_of_difference(t.converted, t.visitors, h.converted, h.visitors)
    row.cuped_abs_lift, low, high = readout.sequential_interval(m1 - m0, v1 + v0, n)
    row.cuped_abs_low, row.cuped_abs_high = readout.within_rates(low, high)  # still a difference of rates
    row.variance_reduction = 1 - (v1 + v0) / plain if plain > 0 else None


def _revenue(row: LiftRow, t: ArmCounts, h: ArmCounts) -> None:
    """Conversion value per visitor. The visitor is the unit randomized, so this is a plain mean per arm
    (no ratio, no delta method), with the always-valid interval on the difference of means."""
    if not (t.revenue or h.revenue):
        return
    m1, v1 = _moments(t.visitors, t.revenue, t.revenue_sq)
    m0, v0 = _moments(h.visitors, h.revenue, h.revenue_sq)
    variance = v1 / t.visitors + v0 / h.visitors
    row.revenue_treatment, row.revenue_holdout = m1, m0
    _, row.revenue_low, row.revenue_high = readout.sequential_interval(m1 - m0, variance, t.visitors + h.visitors)
    row.revenue_lift = m1 - m0
    row.revenue_p_value = readout.sequential_p(m1 - m0, variance, t.visitors + h.visitors)
    row.revenue_chance_to_beat, row.revenue_expected_loss = readout.normal_chance_and_loss(m1 - m0, variance)


def metric_goals(goals: Sequence[str] = (), guardrails: Sequence[str] = ()) -> list[str | None]:
    """The goals of one readout, in order: the goals asked for (None, any goal, without one), then the
    guardrails not among them."""
    asked: list[str | None] = list(dict.fromkeys(goals)) or [None]
    metrics = asked + [g for g in dict.fromkeys(guardrails) if g not in asked]
    if None in metrics and ANY in metrics:  # both would be the metric "any"
        raise ValueError(f"a goal named {ANY!r} reads as any goal: give --goal for the other metrics too")
    return metrics


def lift(records: Iterable[Mapping[str, Any]], *, window_days: float = 30.0, goal: str | None = None,
         goals: Sequence[str] = (), guardrails: Sequence[str] = (), by: str | None = None,
         holdout_share: float | Mapping[str, float] | None = None, min_sample: int = 100,
         correction: str = "holm", members: Members | None = None) -> list[LiftRow]:
    """Lift rows per metric (``goal``, or each of ``goals``, then ``guardrails``), slot and variant.

    ``holdout_share``: one share for every slot, or per slot name (a slot missing
    from the mapping is not SRM-checked). ``by``: rows per breakdown cell too
    (``segment``: the cells ``members`` names).
    """
    records = list(records)
    found = {goal or ANY: outcomes(records, window_days=window_days, goal=goal, by=by, members=members)
             for goal in metric_goals([goal] if goal else goals, guardrails)}
    return readout_rows(found, by=by, guardrails=guardrails, holdout_share=holdout_share, min_sample=min_sample,
                        correction=correction)


def attach_credit(rows: Iterable[LiftRow], credits: Mapping[str, Mapping[str, float]]) -> None:
    """Beside each variant's lift, what each attribution model credits ``slot:variant`` with."""
    for row in rows:
        row.credit = {model: float(per_touch.get(row.key, 0.0)) for model, per_touch in credits.items()}


def outcomes_sql(con: Any, *, window_days: float = 30.0, goal: str | None = None,
                 by: str | None = None, members: Members | None = None) -> dict[tuple[str, str], Outcomes]:
    """:func:`outcomes` in DuckDB over the ``touchpoints`` view of :func:`.source.open_source`.

    The same definitions, computed where the data is: only one row per slot,
    variant, arm (and breakdown cell) comes back to Python. Segments overlap, so
    their cells (``members``, in a temporary table) are counted in a second pass
    beside the whole variants rather than summed into them.
    """
    _check_by(by, members)
    if by != SEGMENT or members is None:
        return _outcomes_sql(con, window_days, goal, by)
    whole = _outcomes_sql(con, window_days, goal, None)
    listed = [(unit, visitor, cell) for (unit, visitor), cells in members.items() for cell in cells]
    if not listed:  # nobody in any segment: no cells
        return whole
    con.execute("CREATE OR REPLACE TEMP TABLE pmw_members AS SELECT unnest($u) AS unit, unnest($v) AS visitor, "
                "unnest($c) AS cell", {"u": [m[0] for m in listed], "v": [m[1] for m in listed],
                                       "c": [m[2] for m in listed]})
    try:
        for key, out in _outcomes_sql(con, window_days, goal, SEGMENT).items():
            whole[key].cells = out.cells
    finally:
        con.execute("DROP TABLE IF EXISTS pmw_members")
    return whole


def _outcomes_sql(con: Any, window_days: float, goal: str | None,
                  by: str | None) -> dict[tuple[str, str], Outcomes]:
    """The query of :func:`outcomes_sql`; ``by="segment"``: only the cells of ``pmw_members``' visitors."""
    goal_filter = "AND goal = $goal" if goal is not None else ""
    params: dict[str, Any] = {"window": check_days(float(window_days), "window_days") * 86400.0}
    if goal is not None:
        params["goal"] = goal
    # The records an experiment needs (``tp``), one join of each visitor's first exposures to their own
    # pageviews and conversions, and conditional sums over it: joining conversions and pageviews
    # separately read the records three times and built two joins (bench/lift.py). ``tp`` is not
    # materialized: two filtered scans of the commands' input (a table, source.read_once, or Parquet)
    # cost less than a copy. The join's sums are grouped by a number per first exposure (``fid``), not
    # by its eight columns, which hashing and comparing made the query's largest step.
    counted = "e.type = 'conversion' AND e.ts > f.ts AND epoch(e.ts) - epoch(f.ts) <= $window"
    by_column = by if by in BREAKDOWNS else "NULL::VARCHAR"  # a name from BREAKDOWNS, never user text
    cell = f"arg_min(coalesce(by_value, '{NO_VALUE}'), ts)" if by in BREAKDOWNS else "NULL::VARCHAR"
    # By segment: each first exposure once per segment its visitor was in, and not at all outside them.
    counted_first = ("SELECT f.* EXCLUDE (cell), m.cell FROM first f JOIN pmw_members m "
                     "ON m.unit = coalesce(f.experiment, f.slot) AND m.visitor = f.visitor") if by == SEGMENT \
        else "SELECT * FROM first"
    rows = con.execute(f"""
        WITH links AS (SELECT DISTINCT visitor, "user" FROM touchpoints
                       WHERE type = 'identify' AND visitor IS NOT NULL AND "user" IS NOT NULL),
        tp AS NOT MATERIALIZED (
            SELECT type, visitor, ts, slot, variant, arm, experiment, holdout_share, {by_column} AS by_value,
                   coalesce(value, 0)::DOUBLE AS value
            FROM touchpoints
            WHERE visitor IS NOT NULL AND (type = 'pageview' OR (type = 'conversion' {goal_filter})
                  OR (type = 'exposure' AND arm IN ('treatment', 'holdout')))
            UNION ALL  -- imported: a user and no visitor, counted for each visitor linked to the user
            SELECT 'conversion', l.visitor, c.ts, NULL, NULL, NULL, NULL, NULL, NULL, coalesce(c.value, 0)::DOUBLE
            FROM touchpoints c JOIN links l USING ("user")
            WHERE c.type = 'conversion' AND c.visitor IS NULL {goal_filter}),
        first AS MATERIALIZED (  -- read twice (cells, per_first): row_number() must number it once
            SELECT arg_min(slot, ts) AS slot, arg_min(variant, ts) AS variant, visitor,
                   arg_min(arm, ts) AS arm, min(ts) AS ts, experiment, arg_min(holdout_share, ts) AS share,
                   {cell} AS cell, row_number() OVER () AS fid
            FROM tp WHERE type = 'exposure'
            GROUP BY coalesce(experiment, slot), experiment, visitor),
        cells AS ({counted_first}),
        per_first AS (
            SELECT f.fid, (count(*) FILTER (WHERE {counted}) > 0)::INTEGER AS y,
                   coalesce(sum(e.value) FILTER (WHERE {counted}), 0) AS r,
                   count(*) FILTER (WHERE e.type = 'pageview' AND e.ts < f.ts) AS x
            FROM first f LEFT JOIN tp e ON e.visitor = f.visitor AND e.type <> 'exposure'
            GROUP BY f.fid),
        per_visitor AS (SELECT f.slot, f.variant, f.arm, f.experiment, f.share, f.cell, p.y, p.r, p.x
                        FROM per_first p JOIN cells f USING (fid))
        SELECT slot, variant, arm, cell, max(experiment), count(*), sum(y), sum(r), sum(r * r), sum(x), sum(x * x),
               sum(x * y), list(DISTINCT share) FILTER (WHERE share IS NOT NULL)
        FROM per_visitor GROUP BY slot, variant, arm, cell""", params).fetchall()
    result: dict[tuple[str, str], Outcomes] = {}
    for (slot, variant, arm, value, experiment, visitors, converted, revenue, revenue_sq, pre, pre_sq, pre_y,
         shares) in rows:
        out = result.setdefault((slot, variant), Outcomes())
        out.experiment = out.experiment or experiment
        recorded = {float(s) for s in shares or ()}
        out.recorded_shares.update(recorded)
        counts = ArmCounts(int(visitors), int(converted), float(revenue), float(revenue_sq), int(pre), int(pre_sq),
                           int(pre_y))
        if value is None:
            setattr(out, arm, counts)
            continue
        out.arm(arm).merge(counts)  # the whole variant is the sum of its cells
        part = out.cells.setdefault(value, Outcomes())
        part.experiment = part.experiment or experiment
        part.recorded_shares.update(recorded)
        setattr(part, arm, counts)
    return result


def lift_rows(found: Mapping[tuple[str, str], Outcomes], *,
              holdout_share: float | Mapping[str, float] | None = None, min_sample: int = 100,
              correction: str = "holm", metric: str = ANY, by: str | None = None) -> list[LiftRow]:
    """Lift rows of one metric from outcomes (of :func:`outcomes` or :func:`outcomes_sql`); see :func:`readout_rows`."""
    return readout_rows({metric: found}, by=by, holdout_share=holdout_share, min_sample=min_sample,
                        correction=correction)


def readout_rows(found: Mapping[str, Mapping[tuple[str, str], Outcomes]], *, by: str | None = None,
                 guardrails: Collection[str] = (), holdout_share: float | Mapping[str, float] | None = None,
                 min_sample: int = 100, correction: str = "holm") -> list[LiftRow]:
    """One readout's rows: per metric (goal name or ``any``), slot and variant, the whole variant and then
    each breakdown cell of its outcomes (``by`` names the field).

    ``correction`` (``holm``, ``bh`` or ``none``) adjusts the always-valid
    p-values across every row of the readout, every metric and cell: ``p_adjusted``.
    Rows of a metric in ``guardrails`` get ``guardrail``: whether it dropped. The split is
    checked against ``holdout_share`` (one, or per slot) when given, else against the share
    the exposures recorded (:func:`checked_share`).
    """
    rows = []
    for metric, per_variant in found.items():
        for (slot, variant), out in sorted(per_variant.items()):
            given = holdout_share.get(slot) if isinstance(holdout_share, Mapping) else holdout_share
            parts: list[tuple[dict[str, str] | None, Outcomes]] = [(None, out)]
            parts += [({"by": by or "cell", "value": value}, cell) for value, cell in sorted(out.cells.items())]
            whole: LiftRow | None = None
            for breakdown, part in parts:
                share, problem = checked_share(given, part.recorded_shares)
                row = lift_row(slot, variant, part, holdout_share=share, min_sample=min_sample, metric=metric,
                               breakdown=breakdown)
                if problem:
                    row.warnings.append(problem)
                if whole is None:
                    whole = row
                elif (part.treatment.visitors, part.holdout.visitors) == (out.treatment.visitors,
                                                                           out.holdout.visitors):
                    # a cell is a subset of its variant's visitors: as many in each arm is all of them
                    row.same_as_whole = True
                    row.warnings.append("the same visitors as its whole variant: not a test of its own")
                rows.append(row)
    # One family: every distinct comparison's conversion test and, where there is revenue, its revenue test.
    # A cell holding all of its variant's visitors repeats the variant's test: counting it twice would
    # tighten the correction for nothing, so it is left out and takes the variant's corrected figures.
    family = _family(rows)
    adjusted_ps = readout.adjust([p for _, _, p in family], correction)
    for (row, name, _), adjusted in zip(family, adjusted_ps, strict=True):
        setattr(row, name, adjusted)
    _copy_whole(rows)
    _flag_splits(rows, correction)
    for row in rows:
        if row.metric in guardrails:
            _flag_guardrail(row)
    _flag_empty_metrics(rows)
    return rows


def _copy_whole(rows: list[LiftRow]) -> None:
    """A cell the same as its whole variant reads the whole's corrected p-values."""
    whole = {(r.metric, r.key): r for r in rows if r.breakdown is None}
    for row in rows:
        if row.same_as_whole:
            same = whole[(row.metric, row.key)]
            row.p_adjusted, row.revenue_p_adjusted = same.p_adjusted, same.revenue_p_adjusted


def _family(rows: Sequence[LiftRow]) -> list[tuple[LiftRow, str, float]]:
    """The tests one correction runs across: every row's conversion test and, where there is revenue, its
    revenue test (row, the attribute its adjusted p-value goes into, the p-value), each distinct comparison
    once: a cell the same as its whole variant is not a test of its own."""
    tested = [r for r in rows if not r.same_as_whole]
    family = [(r, "p_adjusted", r.seq_p_value) for r in tested if r.seq_p_value is not None]
    return family + [(r, "revenue_p_adjusted", r.revenue_p_value) for r in tested if r.revenue_p_value is not None]


def corrected_tests(rows: Sequence[LiftRow]) -> int:
    """How many p-values the readout's correction ran across (what a plan for this readout sizes for)."""
    return len(_family(rows))


def _flag_empty_metrics(rows: list[LiftRow]) -> None:
    """A metric with no conversion in any arm of any variant, e.g. a mistyped --guardrail, would read 'held'
    and 'no effect' on every row; its variants' rows say why instead."""
    for metric in dict.fromkeys(r.metric for r in rows):
        own = [r for r in rows if r.metric == metric]
        if not any(r.conv_treatment or r.conv_holdout for r in own):
            for row in own:
                if row.breakdown is None:
                    row.warnings.append(f"no conversion of {metric} by any experiment visitor: nothing to compare "
                                        "(is the goal named as in the records?)")


def _flag_splits(rows: list[LiftRow], correction: str) -> None:
    """The split of a slot, variant and cell is the same under every metric: checked once, in the first
    metric's rows, and copied to the others."""
    first = rows[0].metric if rows else None
    checked = [r for r in rows if r.metric == first and r.srm_p is not None and not r.same_as_whole]
    _flag_mismatches(checked, correction)
    by_split = {r.label: r for r in checked}
    for row in rows:
        same = by_split.get(row.key if row.same_as_whole else row.label)
        if (row.metric != first or row.same_as_whole) and same is not None:
            row.srm_p_adjusted, row.srm = same.srm_p_adjusted, same.srm
            if same.srm:
                row.warnings.insert(0, same.warnings[0])


def _flag_guardrail(row: LiftRow) -> None:
    """Dropped: the corrected always-valid test says the metric fell (what :func:`significant` calls -1)."""
    row.guardrail = significant(row) < 0
    if row.guardrail:
        row.warnings.insert(0, f"GUARDRAIL DROPPED: {row.metric} conversion {fmt_pp(row.abs_lift)} pp, always-valid "
                            f"95 % [{fmt_pp(row.seq_abs_low)}, {fmt_pp(row.seq_abs_high)}], adjusted p "
                            f"{row.p_adjusted:.1e}")


def fmt_pp(value: float | None) -> str:
    """A difference of rates in signed percentage points, two decimals."""
    return "–" if value is None else f"{value * 100:+.2f}"


def checked_share(given: float | None, recorded: set[float]) -> tuple[float | None, str | None]:
    """The share to check a row's split against, and what is wrong with the shares, if anything.

    A share given (``--holdout-share``, ``--config``) wins; one that differs
    from the recorded one is said, as the configuration may have changed since
    or name another experiment. Records with several shares (the holdout was
    changed during the experiment) have no one share to check against.
    """
    if given is not None:
        if recorded and recorded != {given}:
            shown = ", ".join(f"{s:g}" for s in sorted(recorded))
            return given, (f"holdout share conflict: checked against the given {given:g}, but the exposures "
                           f"recorded {shown}")
        return given, None
    if len(recorded) > 1:
        shown = ", ".join(f"{s:g}" for s in sorted(recorded))
        return None, (f"holdout share changed during the experiment (recorded {shown}): split not checked; "
                      "pass --holdout-share to check against one")
    return (next(iter(recorded)) if recorded else None), None


def _flag_mismatches(checked: list[LiftRow], correction: str) -> None:
    """A split is flagged when its chi-square p-value, corrected across the rows checked, is below SRM_ALPHA.

    Uncorrected, a readout of a dozen rows would flag one by chance in about 1 %
    of readouts at 0.001 (the project's own simulation at its default seed did).
    """
    adjusted = readout.adjust([r.srm_p for r in checked if r.srm_p is not None], correction)
    for row, p in zip(checked, adjusted, strict=True):
        row.srm_p_adjusted = p
        if p < SRM_ALPHA and row.holdout_share is not None and row.srm_chi2 is not None:
            row.srm = True
            observed = row.n_holdout / max(1, row.n_treatment + row.n_holdout)
            row.warnings.insert(0, f"SAMPLE RATIO MISMATCH: holdout {observed:.1%} of visitors, configured "
                                f"{row.holdout_share:.1%} (chi2 {row.srm_chi2:.1f}, p {row.srm_p:.1e}, "
                                f"corrected {p:.1e}); assignment or logging is broken, do not trust this row")


def row_names(rows: Sequence[LiftRow]) -> list[str]:
    """What to call each row where they are listed together: its label, and its metric when several."""
    several = len({r.metric for r in rows}) > 1
    return [f"{r.label} · {r.metric}" if several else r.label for r in rows]


def variants(rows: Sequence[LiftRow]) -> list[LiftRow]:
    """One row per slot and variant: all visitors, the readout's first metric (for credit and charts)."""
    return [r for r in rows if r.breakdown is None and r.metric == rows[0].metric]


def significant(row: LiftRow, alpha: float = readout.ALPHA) -> int:
    """+1 / -1 when the corrected always-valid p-value says the variant helps / hurts, else 0.

    A small breakdown cell is never called (its interval rests on the normal approximation).
    """
    if row.small_cell or row.p_adjusted is None or row.p_adjusted > alpha or row.abs_lift is None or row.abs_lift == 0:
        return 0
    return 1 if row.abs_lift > 0 else -1
