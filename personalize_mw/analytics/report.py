"""The report: one self-contained HTML file, attribution and causal lift side by side.

Everything is inline (CSS, SVG charts drawn in Python): the file opens offline,
from an e-mail attachment or a shared drive, and prints. :func:`collect` runs the
queries over a DuckDB connection from :func:`.source.open_source`;
:func:`render` turns the result into HTML and touches no data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import charts, readout
from . import plan as planning
from .charts import esc
from .lift import (
    ANY,
    LiftRow,
    Members,
    attach_credit,
    corrected_tests,
    metric_goals,
    outcomes_sql,
    readout_rows,
    row_names,
    significant,
)
from .lift import variants as variant_rows
from .models import MODELS, Attribution, attribute_all
from .next_steps import Step
from .source import build_journeys
from .timeline import DayInterval, interval_paths, until_json

MODEL_NAMES = {"first": "First touch", "last": "Last touch", "linear": "Linear", "time_decay": "Time decay",
               "position": "Position (40/20/40)", "markov": "Markov", "shapley": "Shapley"}


@dataclass
class ReportData:
    inputs: list[str]
    goal: str | None
    totals: dict[str, float]
    channels: list[str]                                   # ordered by last-touch credit
    channel_credit: dict[str, dict[str, float]]           # model -> channel -> credited conversions
    lift: list[LiftRow]
    days: list[str]
    daily: dict[str, list[float]]                         # goal -> conversions per day
    funnel: list[tuple[str, int]]
    truth: dict[str, float] | None = None                 # slot:variant -> known effect (simulations)
    models: tuple[str, ...] = MODELS
    window_days: float = 30.0
    lookback_days: float = 30.0
    paths: dict[str, list[DayInterval]] = field(default_factory=dict)  # slot:variant -> interval by day
    progress: list[planning.Plan] = field(default_factory=list)        # per experiment, toward its sample
    unplanned: list[str] = field(default_factory=list)                 # experiments not plannable yet, why
    experiments: list[str] = field(default_factory=list)               # slots with a holdout
    experiments_from: str = "records"                                  # where that list comes from
    until: datetime | None = None                                      # the readout as of this moment
    correction: str = "holm"                                           # of the p-values, across the readout
    generated: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    channel_value: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> channel -> credited value
    next_steps: list[Step] | None = None                  # None: no --config to suggest from
    kept: int = 0                                          # variants without a call yet: keep running
    breakdown_notes: list[str] = field(default_factory=list)  # e.g. segments not evaluable offline

    @property
    def variants(self) -> list[LiftRow]:
        """The lift rows of the variants themselves (first metric, all visitors), without breakdown cells."""
        return variant_rows(self.lift)


def _attributions(con: Any, by: str, goal: str | None, lookback_days: float,
                  models: tuple[str, ...]) -> list[Attribution]:
    return attribute_all(build_journeys(con, by=by, goal=goal, lookback_days=lookback_days), models)


def _per_model(results: list[Attribution], what: str = "conversions") -> dict[str, dict[str, float]]:
    """model -> label -> credited conversions (or ``value``)."""
    return {a.model: {label: float(c) for label, c in zip(a.labels, getattr(a, what), strict=True)}
            for a in results}


def _credit_by_model(con: Any, by: str, goal: str | None, lookback_days: float,
                     models: tuple[str, ...]) -> dict[str, dict[str, float]]:
    return _per_model(_attributions(con, by, goal, lookback_days, models))


def variant_lift(con: Any, *, goal: str | None = None, window_days: float = 30.0, lookback_days: float = 30.0,
                 holdout_share: float | Mapping[str, float] | None = None, min_sample: int = 100,
                 models: tuple[str, ...] = MODELS, correction: str = "holm", goals: Sequence[str] = (),
                 guardrails: Sequence[str] = (), by: str | None = None,
                 members: Members | None = None) -> list[LiftRow]:
    """Lift rows per metric (``goal`` or ``goals``, then ``guardrails``), with, beside each variant's, the credit
    every attribution model gives that variant for that metric (``--by variant``). ``members``: with
    ``by="segment"``, each visitor's segments (:func:`.segment_cells.segment_cells`)."""
    metrics = metric_goals([goal] if goal else goals, guardrails)
    rows = readout_rows({g or ANY: outcomes_sql(con, window_days=window_days, goal=g, by=by, members=members)
                         for g in metrics},
                        by=by, guardrails=guardrails, holdout_share=holdout_share, min_sample=min_sample,
                        correction=correction)
    for g in metrics:
        attach_credit([r for r in rows if r.metric == (g or ANY) and r.breakdown is None],
                      _credit_by_model(con, "variant", g, lookback_days, models))
    return rows


def _daily(con: Any) -> tuple[list[str], dict[str, list[float]]]:
    rows = con.execute("""SELECT strftime(date_trunc('day', ts), '%Y-%m-%d') AS day, coalesce(goal, '(none)'), count(*)
                          FROM touchpoints WHERE type = 'conversion' GROUP BY ALL ORDER BY 1""").fetchall()
    if not rows:
        return [], {}
    span = con.execute("SELECT min(date_trunc('day', ts))::DATE, max(date_trunc('day', ts))::DATE "
                       "FROM touchpoints WHERE type = 'conversion'").fetchone()
    first, last = span
    days = [str(first.fromordinal(d)) for d in range(first.toordinal(), last.toordinal() + 1)]
    index = {d: i for i, d in enumerate(days)}
    daily: dict[str, list[float]] = {}
    for day, goal, count in rows:
        daily.setdefault(goal, [0.0] * len(days))[index[day]] = float(count)
    return days, daily


def _funnel(con: Any, goal: str | None) -> list[tuple[str, int]]:
    goal_filter = "AND goal = $goal" if goal is not None else ""
    row = con.execute(f"""
        SELECT count(*) FILTER (WHERE pageviews >= 1), count(*) FILTER (WHERE pageviews >= 2),
               count(*) FILTER (WHERE pageviews >= 2 AND shown),
               count(*) FILTER (WHERE pageviews >= 2 AND shown AND converted)
        FROM (SELECT visitor,
                     count(*) FILTER (WHERE type = 'pageview') AS pageviews,
                     bool_or(type = 'exposure' AND coalesce(arm, 'treatment') = 'treatment') AS shown,
                     bool_or(type = 'conversion' {goal_filter}) AS converted
              FROM touchpoints WHERE visitor IS NOT NULL GROUP BY visitor)""",
                      {"goal": goal} if goal is not None else {}).fetchone()
    names = ("Visitors (with consent)", "… read 2+ pages", "… and saw a personalized variant",
             f"… and converted ({goal})" if goal else "… and converted (any goal)")
    return list(zip(names, (int(v) for v in row), strict=True))


def _experiments(con: Any) -> list[str]:
    """The experiments the records show: slots whose exposures name one, or that held a visitor out."""
    rows = con.execute("SELECT DISTINCT coalesce(experiment, slot) FROM touchpoints WHERE type = 'exposure' "
                       "AND (experiment IS NOT NULL OR arm = 'holdout') ORDER BY 1").fetchall()
    return [row[0] for row in rows]


def _progress(con: Any, rows: Sequence[LiftRow], holdout_share: float | Mapping[str, float] | None,
              window_days: float, goal: str | None, mde: float | None, relative_mde: float | None,
              power: float) -> tuple[list[planning.Plan], list[str]]:
    """Each experiment's plan (:mod:`.plan`) with its progress: the configured holdout share, else the
    share the records show."""
    split: dict[str, list[int]] = {}
    for row in rows:
        counts = split.setdefault(row.slot, [0, 0])
        counts[0] += row.n_holdout
        counts[1] += row.n_treatment + row.n_holdout

    def share(slot: str) -> float:
        configured = holdout_share.get(slot) if isinstance(holdout_share, Mapping) else holdout_share
        held, total = split.get(slot, [0, 0])
        return configured or (held / total if 0 < held < total else 0.5)

    found = {slot: seen for slot, seen in planning.observed(con, window_days=window_days, goal=goal).items()
             if split.get(slot, [0])[0] > 0}  # only slots with a holdout have a readout to plan for
    return planning.plans_for(found, share, mde=mde, relative_mde=relative_mde, power=power,
                              comparisons=max(1, corrected_tests(rows)))  # what the readout corrects across


def collect(con: Any, inputs: Sequence[str], *, goal: str | None = None, window_days: float = 30.0,
            lookback_days: float = 30.0, holdout_share: float | Mapping[str, float] | None = None,
            min_sample: int = 100, truth: Mapping[str, float] | None = None,
            models: tuple[str, ...] = MODELS, correction: str = "holm", goals: Sequence[str] = (),
            guardrails: Sequence[str] = (), by: str | None = None, until: datetime | None = None,
            experiments: Sequence[str] | None = None, mde: float | None = None,
            relative_mde: float | None = None, power: float = 0.8, members: Members | None = None,
            breakdown_notes: Sequence[str] = ()) -> ReportData:
    """Everything the report shows, from the ``touchpoints`` view (opened at ``until``, if given).

    ``experiments``: the slots with a holdout in the configuration; without it, those the records show.
    ``mde``/``relative_mde``/``power``: what each experiment's planned sample is sized for, as ``plan``.
    The interval paths and the plans are of the readout's first metric (``goal``, else the first of ``goals``).
    """
    totals_row = con.execute("""SELECT count(*), count(DISTINCT visitor),
                                       count(*) FILTER (WHERE type = 'conversion'),
                                       coalesce(sum(value) FILTER (WHERE type = 'conversion'), 0),
                                       count(*) FILTER (WHERE visitor IS NULL AND type = 'pageview')
                                FROM touchpoints""").fetchone()
    totals = dict(zip(("records", "visitors", "conversions", "value", "anonymous_pageviews"),
                      (float(v) for v in totals_row), strict=True))
    if not math.isfinite(totals["value"]):  # the report would show "inf" and mean nothing
        raise ValueError("conversion values add up past what a float holds (a value near 1e308 in the records?); "
                         "look for the conversions with the largest 'value' and remove them")
    by_channel = _attributions(con, "channel", goal, lookback_days, models)
    channel_credit = _per_model(by_channel)
    last = channel_credit.get("last") or next(iter(channel_credit.values()), {})
    channels = sorted({c for credit in channel_credit.values() for c in credit}, key=lambda c: -last.get(c, 0.0))
    days, daily = _daily(con)
    rows = variant_lift(con, goal=goal, window_days=window_days, lookback_days=lookback_days,
                        holdout_share=holdout_share, min_sample=min_sample, models=models, correction=correction,
                        goals=goals, guardrails=guardrails, by=by, members=members)
    first = metric_goals([goal] if goal else goals, guardrails)[0]
    progress, unplanned = _progress(con, variant_rows(rows), holdout_share, window_days, first, mde, relative_mde,
                                    power)
    return ReportData(list(inputs), goal, totals, channels, channel_credit, rows, days, daily, _funnel(con, goal),
                      dict(truth) if truth else None, models, window_days, lookback_days,
                      interval_paths(con, window_days=window_days, goal=first, until=until), progress, unplanned,
                      sorted(experiments) if experiments is not None else _experiments(con),
                      "configuration" if experiments is not None else "records", until, correction,
                      channel_value=_per_model(by_channel, "value"), breakdown_notes=list(breakdown_notes))


# ------------------------------------------------------------------ HTML

CSS = """
:root { --ink:#1f2430; --muted:#6b7280; --line:#e5e7eb; --bg:#f6f7f9; --good:#2f9e77; --bad:#c2417a; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 940px; margin: 0 auto; padding: 28px 20px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 18px; margin: 0 0 6px; }
p.lead { color: var(--muted); margin: 0 0 20px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 20px;
          margin: 0 0 18px; box-shadow: 0 1px 2px rgba(0,0,0,.03); }
section > p { color: var(--muted); margin: 0 0 12px; max-width: 760px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin: 0 0 18px; }
.kpi { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 12px 16px; }
.kpi b { display: block; font-size: 22px; }
.kpi span { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
/* The lift table: row names wrap, and stay in view should a narrow window still scroll it. */
table.lift td:first-child { white-space: normal; overflow-wrap: anywhere; min-width: 9em; max-width: 16em;
                            position: sticky; left: 0; background: #fff; }
table.lift th { white-space: normal; vertical-align: bottom; }
table.lift th:first-child { position: sticky; left: 0; background: #fff; }
table.lift small { color: var(--muted); }
th, td { padding: 6px 6px; font-size: 13px; border-bottom: 1px solid var(--line); text-align: right;
         white-space: nowrap; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
th:first-child, td:first-child { text-align: left; }
td.good { color: var(--good); font-weight: 600; } td.bad { color: var(--bad); font-weight: 600; }
.bar { display: inline-block; height: 8px; background: #e07b39; border-radius: 2px; vertical-align: middle;
       margin-right: 6px; }
.warn { background: #fff4e5; border: 1px solid #f5c77e; border-radius: 8px; padding: 8px 12px; margin: 8px 0; }
.srm { background: #fde8ef; border: 2px solid var(--bad); border-radius: 8px; padding: 10px 14px; margin: 8px 0;
       font-weight: 700; color: #8a1c47; }
.warn ul { margin: 4px 0 0; padding-left: 20px; }
.paths { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(420px, 100%), 1fr)); gap: 8px 16px; }
.progress { display: inline-block; width: 80px; height: 8px; background: var(--line); border-radius: 4px;
            vertical-align: middle; margin-right: 6px; overflow: hidden; }
.progress span { display: block; height: 100%; background: #3b6fd8; }
.callout { border-left: 4px solid #3b6fd8; padding: 6px 12px; background: #f1f5fd; margin: 12px 0 0; }
ol.next li { margin: 0 0 10px; } ol.next code { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; }
footer { color: var(--muted); font-size: 12px; }
svg { display: block; max-width: 100%; height: auto; }
@media print { body { background: #fff; } section { break-inside: avoid; box-shadow: none; } }
"""


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f} %"


def _pp(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}"


def _credit_cell(credit: float, top: float) -> str:
    """A bar and its label, the bar drawn from the figure the label shows (a "0" has no bar)."""
    shown = charts.fmt_amount(credit)
    width = 60 * float(shown.replace(",", "")) / top
    bar = f'<span class="bar" style="width:{width:.0f}px"></span>' if width >= 0.5 else ""
    return f"<td>{bar}{shown}</td>"


def _side_by_side(data: ReportData) -> str:
    if not data.lift:
        return "<p>No experiment exposures (arm treatment/holdout) in these records: no causal lift to show.</p>"
    shown = [m for m in ("last", "first", "linear", "markov", "shapley") if m in data.models]
    top = max([max(r.credit.get(m, 0.0) for m in shown) for r in data.variants] + [1.0])
    head = "".join(f"<th>{esc(MODEL_NAMES[m])}</th>" for m in shown)
    body = []
    for row in data.variants:
        inc = row.caused
        inc_text = "–" if inc is None else f"{inc[0]:,.0f} <small>[{inc[1]:,.0f}, {inc[2]:,.0f}]</small>"
        causal = {1: "good", -1: "bad"}.get(significant(row), "")
        cells = "".join(_credit_cell(row.credit.get(m, 0.0), top) for m in shown)
        body.append(f"<tr><td>{esc(row.key)}</td>{cells}<td class='{causal}'>{inc_text}</td></tr>")
    return (f"<table><thead><tr><th>variant</th>{head}<th>caused (always-valid 95 %)</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _two(first: str, second: str) -> str:
    """A figure with its detail on a second line: the lift table fits 1200 px with thirteen figures a row."""
    return f"{first}<br><small>{second}</small>"


def _lift_table(data: ReportData) -> str:
    body = []
    for row, name in zip(data.lift, row_names(data.lift), strict=True):
        truth = data.truth.get(row.key) if data.truth and row.breakdown is None else None
        truth_cell = f"<td>{_pp(truth)}</td>" if data.truth else ""
        seq = "–" if row.seq_abs_low is None else f"[{_pp(row.seq_abs_low)}, {_pp(row.seq_abs_high)}]"
        ci = "–" if row.abs_low is None else f"[{_pp(row.abs_low)}, {_pp(row.abs_high)}]"
        rel = "–" if (r := row.rel_interval) is None else (f"{r[0] * 100:+.0f} % "
                                                            f"[{r[1] * 100:+.0f}, {r[2] * 100:+.0f}]")
        p = "–" if row.p_adjusted is None else (f"{row.p_adjusted:.3f}" if row.p_adjusted >= 0.001 else "&lt;0.001")
        if row.small_cell:
            p = "small"
        elif row.guardrail:
            p += "<br><b>guardrail dropped</b>"
        causal = {1: "good", -1: "bad"}.get(significant(row), "")
        beats = "–" if row.chance_to_beat is None else f"{row.chance_to_beat:.0%}"
        srm = "<b style='color:#c2417a'>SRM</b>" if row.srm else ("ok" if row.srm_p is not None else "–")
        body.append(f"<tr><td>{esc(name)}</td><td>{_two(f'{row.n_treatment:,}', _pct(row.rate_treatment))}</td>"
                    f"<td>{_two(f'{row.n_holdout:,}', _pct(row.rate_holdout))}</td>"
                    f"<td class='{causal}'>{_two(_pp(row.abs_lift), seq)}</td><td>{_two(ci, rel)}</td>"
                    f"<td class='{causal}'>{p}</td><td>{beats}</td><td>{srm}</td>{truth_cell}</tr>")
    truth_head = "<th>true effect</th>" if data.truth else ""
    return ("<table class='lift'><thead><tr><th>variant</th><th>treated<br>conv.</th><th>holdout<br>conv.</th>"
            "<th>lift, pp<br>always-valid 95 %</th><th>fixed-horizon 95 %<br>relative</th>"
            "<th>p, corrected</th><th>P(beats holdout)</th><th>split</th>"
            f"{truth_head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _revenue(data: ReportData) -> str:
    """Conversion value by touch (each model's share of it per channel) and by variant (lift's revenue per visitor)."""
    if not data.totals["value"]:
        return "<p>No conversion in these records carries a value.</p>"
    shown = [m for m in ("last", "first", "linear", "markov", "shapley") if m in data.channel_value]
    head = "".join(f"<th>{esc(MODEL_NAMES[m])}</th>" for m in shown)
    rows = "".join(f"<tr><td>{esc(c)}</td>" + "".join(f"<td>{_money(data.channel_value[m].get(c, 0.0))}</td>"
                                                       for m in shown) + "</tr>" for c in data.channels)
    by_touch = (f"<table><thead><tr><th>channel</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
                if data.channels else "<p>No conversion value has a touch in the lookback window.</p>")
    body = []
    for row in data.variants:
        interval = "–" if row.revenue_low is None else f"[{_money(row.revenue_low)}, {_money(row.revenue_high)}]"
        causal = ""
        if row.revenue_p_adjusted is not None and row.revenue_p_adjusted <= readout.ALPHA and row.revenue_lift:
            causal = "good" if row.revenue_lift > 0 else "bad"
        body.append(f"<tr><td>{esc(row.key)}</td><td>{_money(row.revenue_treatment)}</td>"
                    f"<td>{_money(row.revenue_holdout)}</td><td class='{causal}'>{_money(row.revenue_lift)}</td>"
                    f"<td class='{causal}'>{interval}</td></tr>")
    by_variant = ("<table><thead><tr><th>variant</th><th>per treated visitor</th><th>per holdout visitor</th>"
                  "<th>difference</th><th>always-valid 95 %</th></tr></thead>"
                  f"<tbody>{''.join(body)}</tbody></table>") if body else ""
    return f'<div class="scroll">{by_touch}</div><div class="scroll">{by_variant}</div>'


def warnings_by_kind(rows: Sequence[LiftRow], skip_small_cells: bool = False
                     ) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
    """(each sample ratio mismatch and dropped guardrail as (row name, warning): every one matters on its
    own; every other warning once, with the rows it applies to), so a dozen small rows make one line, not
    two dozen. ``skip_small_cells``: leave out the small-sample warnings of breakdown cells."""
    loud: list[tuple[str, str]] = []
    rows_of: dict[str, list[str]] = {}
    for row, name in zip(rows, row_names(rows), strict=True):
        for warning in row.warnings:
            if warning.startswith(("SAMPLE RATIO MISMATCH", "GUARDRAIL")):
                loud.append((name, warning))
            elif not (skip_small_cells and row.small_cell and warning.startswith("small sample")):
                rows_of.setdefault(warning, []).append(name)
    return loud, rows_of


def _warnings(data: ReportData) -> str:
    """A red box per sample ratio mismatch or dropped guardrail; the other warnings in one box that lists
    the rows."""
    loud, rows_of = warnings_by_kind(data.lift)
    boxes = [f'<div class="srm">{esc(name)}: {esc(warning)}</div>' for name, warning in loud]
    if rows_of:
        items = "".join(f"<li>{esc(warning)}: {esc(', '.join(names))}</li>" for warning, names in rows_of.items())
        count = len({name for names in rows_of.values() for name in names})
        boxes.append(f'<div class="warn"><b>{count} of {len(data.lift)} rows with a warning</b>'
                     f"<ul>{items}</ul></div>")
    if data.breakdown_notes:
        notes = "".join(f"<li>{esc(note)}</li>" for note in data.breakdown_notes)
        boxes.append(f'<div class="warn"><b>Breakdown</b><ul>{notes}</ul></div>')
    return "".join(boxes)


def _paths(data: ReportData) -> str:
    """Each variant's always-valid interval as of the end of each day: small multiples."""
    drawn = [(row, key, path) for row in data.variants if (path := data.paths.get(key := row.key))]
    if not drawn:
        return "<p>No variant has visitors in both arms yet: no interval to follow.</p>"
    return '<div class="paths">' + "".join(
        charts.interval_path([(p.day, p.lift, p.low, p.high) for p in path], title=key,
                             truth=(data.truth or {}).get(key), call=significant(row),
                             label=f"{key}: always-valid 95 % interval of the absolute lift as of each day")
        for row, key, path in drawn) + "</div>"


def _progress_table(data: ReportData) -> str:
    if not data.progress:
        reasons = "".join(f"<li>{esc(reason)}</li>" for reason in data.unplanned)
        if not reasons:
            return "<p>No experiment with holdout visitors to plan for.</p>"
        return f"<p>No experiment can be planned from its records yet:</p><ul>{reasons}</ul>"
    body = []
    for plan in data.progress:
        share = plan.progress or 0.0
        bar = (f'<span class="progress"><span style="width:{100 * share:.0f}%"></span></span>'
               f"{share:.0%}" if plan.progress is not None else "–")
        left = ("out of reach" if plan.visitors is None else "reached" if plan.seen_visitors >= plan.visitors
                else "–" if not plan.daily_visitors else
                f"{(plan.visitors - plan.seen_visitors) / plan.daily_visitors:,.1f}")
        needed = "out of reach" if plan.visitors is None else f"{plan.visitors:,}"
        body.append(f"<tr><td>{esc(plan.slot)}</td><td>{plan.baseline:.1%}</td><td>{plan.holdout_share:.0%}</td>"
                    f"<td>{plan.seen_visitors:,}</td><td>{needed}</td><td>{bar}</td>"
                    f"<td>{plan.daily_visitors:,.1f}</td><td>{left}</td></tr>")
    first = data.progress[0]
    notes = "".join(f"<li>{esc(reason)}</li>" for reason in data.unplanned)
    return (f"<p>Sized to detect {first.mde * 100:+.2f} pp (or the --relative-mde asked) with "
            f"{first.power:.0%} power on the always-valid interval, as <code>personalize-mw plan</code> does.</p>"
            '<div class="scroll"><table><thead><tr><th>experiment</th><th>baseline</th><th>holdout</th>'
            "<th>visitors so far</th><th>visitors needed</th><th>progress</th><th>visitors/day lately</th>"
            f"<th>days to go</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>"
            + (f"<ul>{notes}</ul>" if notes else ""))


def _callout(data: ReportData) -> str:
    """Name the variant where correlation and causation disagree most, if any."""
    if "last" not in data.models:
        return ""
    # a row under the minimum sample has an interval too wide to say anything with
    null = [r for r in data.variants if r.seq_interval is not None and significant(r) == 0 and not r.small_sample]
    if not null:
        return ""
    row = max(null, key=lambda r: r.credit.get("last", 0.0))
    total = sum(r.credit.get("last", 0.0) for r in data.variants) or 1.0
    share = row.credit.get("last", 0.0) / total
    if share < 0.1:
        return ""
    return (f'<p class="callout"><b>{esc(row.key)}</b> gets {share:.0%} of the last-touch credit among '
            f"personalized variants, yet against its holdout it changed the conversion rate by "
            f"{_pp(row.abs_lift)} pp [{_pp(row.seq_abs_low)}, {_pp(row.seq_abs_high)}]: "
            "no effect we can tell from zero. "
            "It is shown to visitors who were converting anyway.</p>")


def _next_steps(data: ReportData) -> str:
    """What suggest actions, experiments and segments say, each with its evidence and its command."""
    if data.next_steps is None:
        return ("<p>Give the report <code>--config personalize.yaml</code> to list what to do next: the "
                "suggestions read the slots, holdouts and goals it configures.</p>")
    items = "".join(f"<li><b>{esc(s.kind)}</b> {esc(s.subject)}: {esc(s.evidence)}<br><i>{esc(s.caveat)}</i>"
                    f"<br><code>{esc(s.command)}</code></li>" for s in data.next_steps)
    kept = (f" {data.kept} variant{'s have' if data.kept != 1 else ' has'} no call yet: keep running."
            if data.kept else "")
    return ("<p>From <code>personalize-mw suggest actions</code> (randomized results against each holdout), "
            "<code>suggest experiments</code> (attributed credit no holdout has tested) and "
            "<code>suggest segments</code>. Each command writes a change to review in a pull request, its "
            "evidence as comments (a patch of personalize.yaml; segments, YAML to merge into it): nothing is "
            f"applied from here.{kept}</p>"
            f'<ol class="next">{items}</ol>')


def render(data: ReportData) -> str:
    models = [m for m in data.models if m in data.channel_credit]
    channel_chart = charts.grouped_bars(
        data.channels, [(MODEL_NAMES[m], [data.channel_credit[m].get(c, 0.0) for c in data.channels]) for m in models],
        label="Credited conversions per channel under each attribution model")
    # Small-sample rows have intervals so wide they would flatten every other row: table only.
    drawn = [(r.key, *ci, (data.truth or {}).get(r.key), significant(r)) for r in data.variants
             if (ci := r.seq_interval) is not None and not r.small_sample]
    lift_chart = charts.interval_plot(
        drawn,
        label="Absolute lift per variant with always-valid 95 % intervals") if drawn else ""
    daily_chart = charts.time_series(data.days, sorted(data.daily.items()), label="Conversions per day")
    funnel_chart = charts.funnel(data.funnel, label="Journey funnel")
    goal = esc(data.goal) if data.goal else "any goal"
    t = data.totals
    as_of = f", <b>as of {esc(until_json(data.until))}</b> (only records up to then)" if data.until else ""
    experiments = (f"{len(data.experiments)} experiment{'s' if len(data.experiments) != 1 else ''} with a holdout "
                   f"(from the {data.experiments_from}): {esc(', '.join(data.experiments)) or 'none'}. ")
    path_truth = " The solid line is the true effect the simulation built in." if data.truth else ""
    tests = sum((r.p_adjusted is not None) + (r.revenue_p_adjusted is not None) for r in data.lift
                if not r.same_as_whole)  # a cell the same as its variant is not a test of its own
    correction = {"holm": "Holm-adjusted", "bh": "Benjamini–Hochberg-adjusted", "none": "unadjusted"}[data.correction]
    truth_note = (" Hollow diamonds mark the <b>true effect</b> the simulation built in." if data.truth else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Attribution and causal lift — personalize_mw</title>
<style>{CSS}</style></head>
<body><main>
<h1>Who gets the credit, and what actually worked</h1>
<p class="lead">Conversions: {goal}. Attribution lookback {data.lookback_days:g} days;
lift window {data.window_days:g} days after the first exposure.
Generated {esc(data.generated)} from {esc(", ".join(data.inputs))}{as_of}.</p>
<div class="kpis">
  <div class="kpi"><b>{t["visitors"]:,.0f}</b><span>visitors with consent</span></div>
  <div class="kpi"><b>{t["conversions"]:,.0f}</b><span>conversions</span></div>
  <div class="kpi"><b>{t["value"]:,.0f}</b><span>conversion value</span></div>
  <div class="kpi"><b>{t["records"]:,.0f}</b><span>touchpoint records</span></div>
</div>
<section id="side-by-side"><h2>Attributed against causal</h2>
<p>Left: conversions each attribution model credits to a personalized variant (correlation: who was there
before the conversion). Right: conversions the variant <i>caused</i>, from its randomized holdout
(lift × treated visitors).</p>
<div class="scroll">{_side_by_side(data)}</div>{_callout(data)}</section>
<section id="lift"><h2>Causal lift: treatment against holdout</h2>
<p>{experiments}Per variant, visitors who were shown it against visitors held out on the default; a conversion counts
within the window after the first exposure. The chart, the colours and <i>p, corrected</i> are the
always-valid ones (a confidence sequence: valid however often the report is opened), with p {correction}
across the readout's {tests} tests; the fixed-horizon Newcombe interval and the log-ratio relative lift are
for one look only. The split is checked against the configured holdout share (chi-square). Variants under
the minimum sample are in the table only.{truth_note}</p>
{_warnings(data)}{lift_chart}<div class="scroll">{_lift_table(data)}</div></section>
<section id="over-time"><h2>Each interval as of each day</h2>
<p>The always-valid 95 % interval of each variant's absolute lift (pp) as a readout at the end of each day
(UTC) would have shown it: a lift that starts high and shrinks is a novelty effect. The interval stays valid
however often it is looked at; the vertical axis spans three times the last interval's width on either side,
so wider early intervals run off it.{path_truth}</p>
{_paths(data)}</section>
<section id="progress"><h2>Progress toward the planned sample</h2>
{_progress_table(data)}</section>
<section id="next"><h2>What to do next</h2>
{_next_steps(data)}</section>
<section id="channels"><h2>Credit per channel under each model</h2>
<p>The channel that started each session is a touch; every model shares out the same
{sum(data.channel_credit.get("last", {}).values()):,.0f} conversions.</p>
{channel_chart}</section>
<section id="revenue"><h2>Revenue by touch and by variant</h2>
<p>By touch: the conversion value each model credits to the channel that started each session. By variant:
the conversion value per visitor within the lift window, treatment against holdout.</p>
{_revenue(data)}</section>
<section id="time"><h2>Conversions over time</h2><p>Per day and goal (all records, with or without consent).</p>
{daily_chart}</section>
<section id="funnel"><h2>Journey funnel</h2><p>Visitors with a visitor id (analytics and personalization
consent), each stage within the one above; {t["anonymous_pageviews"]:,.0f} page views came without an id.</p>
{funnel_chart}</section>
<footer>personalize_mw report · one self-contained file: no scripts, no fonts, no network.</footer>
</main></body></html>
"""
