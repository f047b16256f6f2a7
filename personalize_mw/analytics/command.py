"""``personalize-mw attribution``: credit per channel, page or variant under each model."""

from __future__ import annotations

import argparse
import math
import sys

from .days import days_argument
from .models import MODELS, attribute_all, credited_totals
from .source import BY
from .timeline import until_argument, until_json

FORMATS = ("table", "json", "csv")


def add_input_arguments(parser: argparse.ArgumentParser, *, goals: bool = False) -> None:
    """The inputs and what every readout of them takes; ``goals``: ``--goal`` may be given several times."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="JSONL files, globs or folders; a sink URL: jsonl:PATH, sqlite:PATH[?table=T], "
                             "postgresql://...[?table=T]")
    if goals:
        parser.add_argument("--goal", action="append", default=[], metavar="GOAL",
                            help="count only conversions of this goal; repeat for one metric per goal "
                            "(default: one metric, any goal)")
    else:
        parser.add_argument("--goal", help="count only conversions of this goal")
    parser.add_argument("--lookback-days", type=days_argument, default=30.0,
                        help="touches older than this before a conversion are left out (default 30, at most 365)")
    parser.add_argument("--skip-bad-lines", action="store_true",
                        help="skip JSONL lines that are not JSON (e.g. one torn by a crash) instead of stopping")
    add_until_argument(parser)


def add_until_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--until", type=until_argument, metavar="TIMESTAMP",
                        help="the readout as of this moment: only records at or before it (ISO 8601, e.g. "
                        "2026-11-20T18:00:00Z; no zone: UTC; a date alone: the end of that day)")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("attribution", help="which touches get the credit for conversions")
    add_input_arguments(parser)
    parser.add_argument("--by", choices=BY, default="channel",
                        help="channel (that started each session), content (pages viewed) or variant (slot:variant)")
    parser.add_argument("--model", choices=(*MODELS, "all"), default="all")
    parser.add_argument("--value", action="store_true", help="credit conversion value instead of conversions")
    parser.add_argument("--half-life-hours", type=float, default=168.0, help="time_decay half-life (default 168)")
    parser.add_argument("--order", type=int, default=1, help="markov order (default 1)")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import duckdb
    import numpy as np

    from . import output
    from .source import build_journeys, open_source

    try:
        con = open_source(args.inputs, skip_bad_lines=args.skip_bad_lines, until=args.until)
        try:
            journeys = build_journeys(con, by=args.by, goal=args.goal, lookback_days=args.lookback_days)
        finally:
            con.close()  # removes DuckDB's spill folder, if it made one
    except (OSError, ValueError, duckdb.Error) as exc:
        print(f"attribution: {exc}", file=sys.stderr)
        if isinstance(exc, duckdb.InvalidInputException) and "JSON" in str(exc):
            print("attribution: --skip-bad-lines reads past lines that are not JSON", file=sys.stderr)
        return 1
    models = MODELS if args.model == "all" else (args.model,)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked for just below, by name
        results = attribute_all(journeys, models, half_life_hours=args.half_life_hours, order=args.order)
        conversions, value = credited_totals(journeys)
    if not math.isfinite(value) or not all(np.isfinite(r.value).all() for r in results):
        # JSON has no Infinity; a total that overflowed means values no goal should have.
        print("attribution: conversion values add up past what a float holds (a value near 1e308 in the "
              "records?); look for the conversions with the largest 'value' and remove them", file=sys.stderr)
        return 1
    unattributed = int((journeys.converted & (journeys.lengths == 0)).sum())
    meta = {"by": args.by, "goal": args.goal, "lookback_days": args.lookback_days, "until": until_json(args.until),
            "journeys": journeys.count, "converting_journeys": int(journeys.converted.sum()),
            "credited_conversions": conversions, "credited_value": value,
            "conversions_without_touch": unattributed}
    if args.format == "json":
        print(output.to_json(results, meta))
    elif args.format == "csv":
        sys.stdout.write(output.to_csv(results, args.by))
    else:
        from .terminal import console, show

        out = console()
        what = "conversion value" if args.value else "conversions"
        title = (f"Credit for {what} by {args.by}: {journeys.count:,} journeys, "
                 f"{int(journeys.converted.sum()):,} converting")
        out.print(title, soft_wrap=True, highlight=False)
        show(out, output.to_grid(results, args.by, args.value))
        if unattributed:
            out.print(f"{unattributed:,} conversion(s) had no {args.by} touch in the lookback window "
                          "and are credited to nobody.")
    return 0
