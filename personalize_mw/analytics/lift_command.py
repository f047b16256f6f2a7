"""``personalize-mw lift``, ``report`` and ``simulate``: causal lift beside attribution."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from . import readout
from .command import FORMATS, add_input_arguments, share_argument
from .days import days_argument
from .lift import BY_CHOICES, SEGMENT, LiftRow, fmt_pp, row_names, significant
from .models import MODELS
from .plan_command import add_effect_arguments
from .simulate_command import add_parser as add_simulate
from .terminal import Grid
from .timeline import until_json

if TYPE_CHECKING:
    from .report import ReportData
    from .segment_cells import SegmentCells


def _lift_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser, goals=True)
    parser.add_argument("--guardrail", action="append", default=[], metavar="GOAL",
                        help="a goal that must not drop: its rows say whether it did (repeatable; also the "
                        "guardrails: list of --config)")
    parser.add_argument("--by", choices=BY_CHOICES,
                        help="also a row per value of this field of the first exposure, e.g. each channel; "
                        "segment: per segment of --config the visitor was in at their first exposure")
    parser.add_argument("--window-days", type=days_argument, default=30.0,
                        help="a conversion counts this long after the first exposure (default 30, at most 365)")
    parser.add_argument("--holdout-share", type=share_argument,
                        help="the configured holdout share to check the split against (sample ratio mismatch)")
    parser.add_argument("--config",
                        help="personalize.yaml: the holdout share of each slot (instead of --holdout-share) "
                        "and its guardrails")
    parser.add_argument("--min-sample", type=int, default=100,
                        help="warn below this many visitors in an arm; a breakdown cell below it is 'small', "
                        "never called significant (default 100)")
    parser.add_argument("--correction", choices=readout.CORRECTIONS, default="holm",
                        help="multiple comparisons across the readout's rows: holm (family-wise, the default), "
                        "bh (Benjamini-Hochberg, false discovery rate) or none")


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lift = commands.add_parser("lift", help="causal lift per slot and variant: treatment against holdout; "
                               "exit 2 on a sample ratio mismatch")
    _lift_arguments(lift)
    lift.add_argument("--format", choices=FORMATS, default="table")
    lift.set_defaults(run=run_lift)
    report = commands.add_parser("report", help="one self-contained HTML report: attribution and lift side by side")
    _lift_arguments(report)
    report.add_argument("--out", default="report.html", help="file to write (default report.html)")
    report.add_argument("--truth", help="JSON of known effects (written by simulate) to draw beside the estimates")
    add_effect_arguments(report)  # what each experiment's planned sample is sized for, as plan's
    report.set_defaults(run=run_report)
    add_simulate(commands)


# Names and references of the figures, for scripts reading --format json (docs/lift.md defines each).
METHOD = {
    "abs_low/abs_high": "Newcombe hybrid score interval, fixed horizon (Newcombe 1998, method 10)",
    "p_value": "pooled two-proportion z-test, fixed horizon",
    "seq_abs_low/seq_abs_high/seq_p_value": "asymptotic confidence sequence, Gaussian mixture, rho tuned at "
    f"{readout.T_STAR} visitors (Waudby-Smith et al., Annals of Statistics 2024, Theorem 2.2)",
    "p_adjusted": "seq_p_value adjusted across every row (metric, variant, breakdown cell) of the readout, with "
    "revenue_p_value: Holm 1979 step-down or Benjamini-Hochberg 1995 step-up; a cell with all its variant's "
    "visitors (same_as_whole) is not counted again and takes its variant's",
    "abs_low/abs_high/seq_abs_low/seq_abs_high/cuped_abs_low/cuped_abs_high": "clipped to [-1, 1], where a "
    "difference of two rates lies",
    "segment cells": "the config's segments evaluated offline at each visitor's first exposure in the experiment "
    "(pageviews and goals up to its request; that request's path, device, country, referrer host and utm); "
    "cells overlap",
    "guardrail": "dropped: p_adjusted below 0.05 with a negative abs_lift",
    "chance_to_beat/expected_loss": "independent Beta(1, 1) priors, closed forms (Miller 2015; Stucchio 2015)",
    "revenue_chance_to_beat/revenue_expected_loss": "normal approximation of the difference of means, flat prior "
    "(as GrowthBook's gbstats)",
}


def config_holdout_shares(path: str) -> dict[str, float]:
    """Each slot's configured holdout share, for the slots that have one."""
    return _config_settings(path)[0]


def _config_settings(path: str) -> tuple[dict[str, float], list[str]]:
    """The holdout share of each slot that has one, and the guardrail goals."""
    from ..config import load_config

    config = load_config(path)
    shares = {name: float(getattr(slot, "holdout", 0.0)) for name, slot in config.slots.items()
              if getattr(slot, "holdout", 0.0)}
    return shares, list(config.guardrails)


def _settings(args: argparse.Namespace) -> tuple[float | dict[str, float] | None, list[str]]:
    """(holdout shares, guardrails): the options', else the config's; guardrails of both."""
    shares, guardrails = _config_settings(args.config) if args.config else (None, [])
    return (args.holdout_share if args.holdout_share is not None else shares,
            list(dict.fromkeys([*args.guardrail, *guardrails])))


def lift_grid(rows: Sequence[LiftRow], title: str) -> Grid:
    guarded = any(row.guardrail is not None for row in rows)
    grid = Grid(title, "variant", ("treated", "conv %", "holdout", "conv %", "lift pp [always-valid 95 %]",
                                   "fixed-horizon 95 %", "p adj.", "P(beats)", "split",
                                   *(("guardrail",) if guarded else ())))
    for row in rows:
        lift = "–" if row.seq_abs_low is None else (f"{fmt_pp(row.abs_lift)} "
                                                     f"[{fmt_pp(row.seq_abs_low)}, {fmt_pp(row.seq_abs_high)}]")
        fixed = "–" if row.abs_low is None else f"[{fmt_pp(row.abs_low)}, {fmt_pp(row.abs_high)}]"
        p = "–" if row.p_adjusted is None else f"{row.p_adjusted:.4f}"
        direction = significant(row)
        if row.small_cell:
            p = "small"
        elif direction:
            p = f"[bold {'green' if direction > 0 else 'red'}]{p}[/]"
        beats = "–" if row.chance_to_beat is None else f"{row.chance_to_beat:.0%}"
        split = "[bold red]SRM[/]" if row.srm else ("ok" if row.srm_p is not None else "unchecked")
        rate_t = "–" if row.rate_treatment is None else f"{row.rate_treatment * 100:.2f}"
        rate_h = "–" if row.rate_holdout is None else f"{row.rate_holdout * 100:.2f}"
        guard = "small" if row.small_cell else {True: "[bold red]DROPPED[/]", False: "held", None: "–"}[row.guardrail]
        name = row.key if row.breakdown is None else f"  {row.breakdown['value']}"  # the title names the field
        grid.add_row(name, f"{row.n_treatment:,}", rate_t, f"{row.n_holdout:,}", rate_h, lift, fixed, p, beats,
                     split, *((guard,) if guarded else ()))
    return grid


def credit_grid(rows: Sequence[LiftRow], models: Sequence[str], title: str) -> Grid:
    """Attributed against causal: each model's credited conversions beside those the variant caused."""
    grid = Grid(title, "variant", (*models, "caused [95 % CI]"))
    for row, name in zip(rows, row_names(rows), strict=True):
        caused = "–" if (inc := row.caused) is None else f"{inc[0]:,.1f} [{inc[1]:,.1f}, {inc[2]:,.1f}]"
        grid.add_row(name, *(f"{row.credit.get(m, 0.0):,.1f}" for m in models), caused)
    return grid


def lift_csv(rows: Sequence[LiftRow], models: Sequence[str]) -> str:
    from .output import csv_cell

    fields = [f for f in LiftRow.__dataclass_fields__ if f not in ("credit", "warnings", "breakdown")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*fields, "breakdown_by", "breakdown_value", *(f"credit_{m}" for m in models), "warnings"])
    for row in rows:
        data = row.as_dict()
        cell = row.breakdown or {}
        writer.writerow([csv_cell(data[f]) if data[f] is not None else "" for f in fields]
                        + [csv_cell(cell.get("by", "")), csv_cell(cell.get("value", ""))]
                        + [repr(row.credit.get(m, 0.0)) for m in models] + [csv_cell("; ".join(row.warnings))])
    return out.getvalue()


Settings = tuple[Any, float | dict[str, float] | None, list[str]]


def segment_members(con: Any, by: str | None, config: str | None, name: str) -> SegmentCells | None:
    """With ``--by segment``: each experiment visitor's segments of ``config`` at their first exposure, a
    note on stderr per segment that cannot be evaluated from the records or holds nobody; else None."""
    if by != SEGMENT:
        return None
    from ..config import load_config
    from .segment_cells import segment_cells

    if config is None:
        raise ValueError("--by segment needs --config: the segments are the config's")
    found = segment_cells(con, load_config(config))
    for note in found.notes():
        print(f"{name}: {note}", file=sys.stderr)
    return found


def opened_for(args: argparse.Namespace) -> Any:
    """The records of a readout's inputs, read once; with the request's fields when ``--by segment``
    evaluates a segment of ``--config`` that tests them (only then: they widen every read)."""
    from .source import open_source, read_once

    request = False
    if args.by == SEGMENT and args.config:
        from ..config import load_config
        from .segment_cells import reads_request

        request = reads_request(load_config(args.config))
    return read_once(open_source(args.inputs, skip_bad_lines=args.skip_bad_lines, until=args.until,
                                 unit=args.unit, request=request))


def _open(args: argparse.Namespace, name: str) -> Settings | None:
    """(the DuckDB connection, the holdout shares, the guardrails), or None after a message on stderr."""
    from ..errors import ConfigError

    try:
        return (opened_for(args), *_settings(args))
    except (OSError, ValueError, ConfigError, duckdb.Error) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return None


def _loud(rows: Sequence[LiftRow]) -> None:
    """Sample ratio mismatches and dropped guardrails, on stderr whatever the format, each once."""
    said = set()
    for row, name in zip(rows, row_names(rows), strict=True):
        for warning in row.warnings:
            line = f"lift: {name if warning.startswith('GUARDRAIL') else row.label}: {warning}"
            if warning.startswith(("SAMPLE RATIO MISMATCH", "GUARDRAIL")) and line not in said:
                said.add(line)
                print(line, file=sys.stderr)


def run_lift(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from .report import variant_lift

    opened = _open(args, "lift")
    if opened is None:
        return 1
    con, shares, guardrails = opened
    try:
        segments = segment_members(con, args.by, args.config, "lift")
        rows = variant_lift(con, goals=args.goal, guardrails=guardrails, by=args.by, window_days=args.window_days,
                            lookback_days=args.lookback_days, holdout_share=shares, min_sample=args.min_sample,
                            correction=args.correction, members=segments.members if segments else None)
    except (OSError, ValueError, ConfigError, duckdb.Error) as exc:  # e.g. a torn JSONL line
        print(f"lift: {exc}", file=sys.stderr)
        return 1
    metrics = list(dict.fromkeys(row.metric for row in rows))
    if args.format == "json":
        print(json.dumps({"goal": args.goal[0] if len(args.goal) == 1 else None, "goals": args.goal,
                          "guardrails": guardrails, "by": args.by, "unit": args.unit, "metrics": metrics,
                          "window_days": args.window_days, "holdout_share": shares,
                          "correction": args.correction, "until": until_json(args.until), "method": METHOD,
                          "segments": segments.as_json() if segments else None,
                          "variants": [row.as_dict() for row in rows]},
                         indent=2, ensure_ascii=False))
    elif args.format == "csv":
        sys.stdout.write(lift_csv(rows, MODELS))
    else:
        _print_tables(rows, metrics, guardrails, args)
    _loud(rows)
    return 2 if any(row.srm for row in rows) else 0


def _print_tables(rows: Sequence[LiftRow], metrics: Sequence[str], guardrails: Sequence[str],
                  args: argparse.Namespace) -> None:
    from rich.markup import escape

    from .lift import ANY
    from .report import warnings_by_kind
    from .terminal import console as open_console
    from .terminal import show

    console = open_console()
    for metric in metrics:
        what = "any goal" if metric == ANY else metric
        if metric in guardrails:
            what = f"guardrail {metric}: must not drop"
        show(console, lift_grid([r for r in rows if r.metric == metric],
                                f"Causal lift ({what}): treatment against holdout, {args.window_days:g}-day window"
                                + (f", by {args.by}" if args.by else "")))
    show(console, credit_grid([r for r in rows if r.breakdown is None], MODELS,
                              "Attributed (credited conversions, --by variant) against caused "
                              "(lift x treated visitors)"))
    if not rows:
        console.print("No exposures with arm treatment/holdout: no slot runs an experiment with a holdout.")
    unchecked = [r for r in rows if r.srm_p is None and r.breakdown is None and r.metric == rows[0].metric]
    if unchecked:  # no share given or recorded, also under a --config that names none of these slots
        console.print(f"Split not checked for {len(unchecked)} variant(s): no holdout share for their slot "
                      "(recorded on exposures since schema 4, --holdout-share, or --config naming it) for the "
                      "sample ratio check.")
    small = [r for r in rows if r.small_cell]
    if small:
        console.print(f"[yellow]{len(small)} breakdown cells have fewer than {args.min_sample} visitors in an arm: "
                      "'small', never called significant.[/]")
    loud, rows_of = warnings_by_kind(rows, skip_small_cells=True)  # small cells: said once above
    for name, warning in loud:
        console.print(f"[bold white on red]{escape(name)}: {escape(warning)}[/]")
    for warning, names in rows_of.items():
        console.print(f"[yellow]{escape(warning)}: {escape(', '.join(names))}[/]")


def _next_steps(con: Any, args: argparse.Namespace, data: ReportData) -> None:
    """The report's "What to do next", from the suggest commands over the same records and --config."""
    from ..config import load_config
    from .next_steps import Options, steps

    goal = args.goal[0] if args.goal else None
    options = Options(args.inputs, args.config, goal=goal, by=args.by, window_days=args.window_days,
                      lookback_days=args.lookback_days, min_sample=args.min_sample, mde=args.mde,
                      relative_mde=args.relative_mde, power=args.power, until=args.until, unit=args.unit,
                      skip_bad_lines=args.skip_bad_lines)
    data.next_steps, data.kept = steps(con, load_config(args.config), options)


def run_report(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from .report import collect, render

    opened = _open(args, "report")
    if opened is None:
        return 1
    con, shares, guardrails = opened
    truth: Mapping[str, float] | None = None
    if args.truth:
        known = json.loads(Path(args.truth).read_text(encoding="utf-8"))
        truth = known.get("effects", known)
        if shares is None and "holdout_share" in known:
            shares = float(known["holdout_share"])
    configured = list(config_holdout_shares(args.config)) if args.config else None
    try:
        segments = segment_members(con, args.by, args.config, "report")
        data = collect(con, args.inputs, goal=args.goal[0] if len(args.goal) == 1 else None, goals=args.goal,
                       guardrails=guardrails, by=args.by, window_days=args.window_days,
                       lookback_days=args.lookback_days, holdout_share=shares, min_sample=args.min_sample, truth=truth,
                       correction=args.correction, until=args.until, experiments=configured, mde=args.mde,
                       relative_mde=args.relative_mde, power=args.power, members=segments.members if segments else None,
                       breakdown_notes=segments.notes() if segments else ())
        if args.config:
            _next_steps(con, args, data)
    except (OSError, ValueError, ConfigError, duckdb.Error) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 1
    Path(args.out).write_text(render(data), encoding="utf-8")
    held = sum(1 for r in data.variants if r.n_holdout)
    checked = sum(r.srm_p is not None for r in data.variants)
    # "0 with a mismatch" of splits nobody checked would read as a clean bill
    splits = (f"{sum(r.srm for r in data.variants)} with a sample ratio mismatch" if checked == len(data.variants)
              else f"{len(data.variants) - checked} split(s) not checked: no holdout share for their slot "
              "(--holdout-share, or --config naming it)")
    print(f"report: {args.out} ({len(data.experiments)} experiment(s) with a holdout, from the "
          f"{data.experiments_from}; {held} of {len(data.variants)} variants with holdout visitors, {splits})")
    return 0
