"""``personalize-mw lift``, ``report`` and ``simulate``: causal lift beside attribution."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from . import readout
from .command import FORMATS, add_input_arguments
from .lift import LiftRow, significant
from .models import MODELS
from .simulate_command import add_parser as add_simulate


def _lift_arguments(parser: argparse.ArgumentParser) -> None:
    add_input_arguments(parser)
    parser.add_argument("--window-days", type=float, default=30.0,
                        help="a conversion counts this long after the first exposure (default 30)")
    parser.add_argument("--holdout-share", type=float,
                        help="the configured holdout share to check the split against (sample ratio mismatch)")
    parser.add_argument("--config",
                        help="personalize.yaml: the holdout share of each slot (instead of --holdout-share)")
    parser.add_argument("--min-sample", type=int, default=100, help="warn below this many visitors in an arm")
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
    report.set_defaults(run=run_report)
    add_simulate(commands)


# Names and references of the figures, for scripts reading --format json (docs/lift.md defines each).
METHOD = {
    "abs_low/abs_high": "Newcombe hybrid score interval, fixed horizon (Newcombe 1998, method 10)",
    "p_value": "pooled two-proportion z-test, fixed horizon",
    "seq_abs_low/seq_abs_high/seq_p_value": "asymptotic confidence sequence, Gaussian mixture, rho tuned at "
    f"{readout.T_STAR} visitors (Waudby-Smith et al., Annals of Statistics 2024, Theorem 2.2)",
    "p_adjusted": "seq_p_value adjusted across rows: Holm 1979 step-down or Benjamini-Hochberg 1995 step-up",
    "chance_to_beat/expected_loss": "independent Beta(1, 1) priors, closed forms (Miller 2015; Stucchio 2015)",
    "revenue_chance_to_beat/revenue_expected_loss": "normal approximation of the difference of means, flat prior "
    "(as GrowthBook's gbstats)",
}


def config_holdout_shares(path: str) -> dict[str, float]:
    """Each slot's configured holdout share, for the slots that have one."""
    from ..config import load_config

    config = load_config(path)
    return {name: float(getattr(slot, "holdout", 0.0)) for name, slot in config.slots.items()
            if getattr(slot, "holdout", 0.0)}


def holdout_shares(args: argparse.Namespace) -> float | dict[str, float] | None:
    if args.holdout_share is not None:
        return args.holdout_share
    return config_holdout_shares(args.config) if args.config else None


def _fmt_pp(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.2f}"


def lift_table(rows: Sequence[LiftRow], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in ("variant", "treated", "conv %", "holdout", "conv %", "lift pp [always-valid 95 %]",
                 "fixed-horizon 95 %", "p adj.", "P(beats)", "split"):
        table.add_column(name, justify="left" if name == "variant" else "right")
    for row in rows:
        lift = "–" if row.seq_abs_low is None else (f"{_fmt_pp(row.abs_lift)} "
                                                     f"[{_fmt_pp(row.seq_abs_low)}, {_fmt_pp(row.seq_abs_high)}]")
        fixed = "–" if row.abs_low is None else f"[{_fmt_pp(row.abs_low)}, {_fmt_pp(row.abs_high)}]"
        p = "–" if row.p_adjusted is None else f"{row.p_adjusted:.4f}"
        direction = significant(row)
        if direction:
            p = f"[bold {'green' if direction > 0 else 'red'}]{p}[/]"
        beats = "–" if row.chance_to_beat is None else f"{row.chance_to_beat:.0%}"
        split = "[bold red]SRM[/]" if row.srm else ("ok" if row.srm_p is not None else "unchecked")
        rate_t = "–" if row.rate_treatment is None else f"{row.rate_treatment * 100:.2f}"
        rate_h = "–" if row.rate_holdout is None else f"{row.rate_holdout * 100:.2f}"
        table.add_row(row.key, f"{row.n_treatment:,}", rate_t, f"{row.n_holdout:,}", rate_h, lift, fixed, p,
                      beats, split)
    return table


def credit_table(rows: Sequence[LiftRow], models: Sequence[str], title: str) -> Any:
    """Attributed against causal: each model's credited conversions beside those the variant caused."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("variant")
    for model in models:
        table.add_column(model, justify="right")
    table.add_column("caused [95 % CI]", justify="right")
    for row in rows:
        caused = "–" if (inc := row.caused) is None else f"{inc[0]:,.1f} [{inc[1]:,.1f}, {inc[2]:,.1f}]"
        table.add_row(row.key, *(f"{row.credit.get(m, 0.0):,.1f}" for m in models), caused)
    return table


def lift_csv(rows: Sequence[LiftRow], models: Sequence[str]) -> str:
    from .output import csv_cell

    fields = [f for f in LiftRow.__dataclass_fields__ if f not in ("credit", "warnings")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*fields, *(f"credit_{m}" for m in models), "warnings"])
    for row in rows:
        data = row.as_dict()
        writer.writerow([csv_cell(data[f]) if data[f] is not None else "" for f in fields]
                        + [repr(row.credit.get(m, 0.0)) for m in models] + [csv_cell("; ".join(row.warnings))])
    return out.getvalue()


def read_once(con: Any) -> Any:
    """The ``touchpoints`` view copied into a table, the view then reading that.

    The lift query and the attribution beside it (and the report's sections) each
    read every record, and over JSON lines each read is a full parse (bench/lift.py).
    """
    con.execute("CREATE TEMP TABLE pmw_readout AS SELECT * FROM touchpoints")
    con.execute("CREATE OR REPLACE TEMP VIEW touchpoints AS SELECT * FROM pmw_readout")
    return con


def _open(args: argparse.Namespace, name: str) -> tuple[Any, float | dict[str, float] | None] | None:
    from ..errors import ConfigError
    from .source import open_source

    try:
        return read_once(open_source(args.inputs, skip_bad_lines=args.skip_bad_lines)), holdout_shares(args)
    except (OSError, ValueError, ConfigError, duckdb.Error) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return None


def run_lift(args: argparse.Namespace) -> int:
    from .report import variant_lift

    opened = _open(args, "lift")
    if opened is None:
        return 1
    con, shares = opened
    try:
        rows = variant_lift(con, goal=args.goal, window_days=args.window_days, lookback_days=args.lookback_days,
                            holdout_share=shares, min_sample=args.min_sample, correction=args.correction)
    except (OSError, ValueError, duckdb.Error) as exc:  # e.g. a torn JSONL line without --skip-bad-lines
        print(f"lift: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps({"goal": args.goal, "window_days": args.window_days, "holdout_share": shares,
                          "correction": args.correction, "method": METHOD,
                          "variants": [row.as_dict() for row in rows]}, indent=2, ensure_ascii=False))
    elif args.format == "csv":
        sys.stdout.write(lift_csv(rows, MODELS))
    else:
        from rich.console import Console

        # Piped output (logs, CI) gets a wide page instead of rich's 80 columns.
        console = Console() if sys.stdout.isatty() else Console(width=150)
        goal = args.goal or "any goal"
        console.print(lift_table(rows, f"Causal lift ({goal}): treatment against holdout, "
                                       f"{args.window_days:g}-day window"))
        console.print(credit_table(rows, MODELS, "Attributed (credited conversions, --by variant) against caused "
                                                 "(lift x treated visitors)"))
        if not rows:
            console.print("No exposures with arm treatment/holdout: no slot runs an experiment with a holdout.")
        if rows and all(row.srm_p is None for row in rows):
            console.print("Split not checked: the records carry no holdout share (schema 4 has one); pass "
                          "--holdout-share or --config for the sample ratio check.")
        for row in rows:
            for warning in row.warnings:
                style = "bold white on red" if row.srm and warning.startswith("SAMPLE") else "yellow"
                console.print(f"[{style}]{row.key}: {warning}[/]")
    for row in rows:
        if row.srm:  # loud on every format: scripts see the exit status, people see stderr
            print(f"lift: {row.key}: {row.warnings[0]}", file=sys.stderr)
    return 2 if any(row.srm for row in rows) else 0


def run_report(args: argparse.Namespace) -> int:
    from .report import collect, render

    opened = _open(args, "report")
    if opened is None:
        return 1
    con, shares = opened
    truth: Mapping[str, float] | None = None
    if args.truth:
        known = json.loads(Path(args.truth).read_text(encoding="utf-8"))
        truth = known.get("effects", known)
        if shares is None and "holdout_share" in known:
            shares = float(known["holdout_share"])
    try:
        data = collect(con, args.inputs, goal=args.goal, window_days=args.window_days,
                       lookback_days=args.lookback_days, holdout_share=shares, min_sample=args.min_sample, truth=truth,
                       correction=args.correction)
    except (OSError, ValueError, duckdb.Error) as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 1
    Path(args.out).write_text(render(data), encoding="utf-8")
    print(f"report: {args.out} ({len(data.lift)} variants with a holdout, "
          f"{sum(r.srm for r in data.lift)} with a sample ratio mismatch)")
    return 0
