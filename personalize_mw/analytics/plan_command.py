"""``personalize-mw plan``: visitors and days an experiment needs, from the records or from figures given."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import plan as planning
from .command import add_until_argument
from .days import days_argument
from .terminal import Grid
from .timeline import until_json

METHOD = ("visitors (both arms) at which the always-valid 95 % interval (readout.sequential_difference) detects "
          "the lift with the given power, its level alpha / comparisons (the readout's Holm correction): "
          "mde >= half_width(t) + z_power * sqrt(V(t)); fixed horizon: (z_(1-alpha/2m) + z_power)^2 V / mde^2")


def add_effect_arguments(parser: argparse.ArgumentParser) -> None:
    """The lift to plan for and the power: ``plan``'s and ``report``'s (its progress toward the plan)."""
    effect = parser.add_mutually_exclusive_group()
    effect.add_argument("--mde", type=float, help="smallest absolute lift worth detecting, in percentage points "
                        "(default 1)")
    effect.add_argument("--relative-mde", type=float, help="the same, relative to the baseline (0.1 = +10 %%)")
    parser.add_argument("--power", type=float, default=0.8, help="chance to detect a lift of that size (default 0.8)")


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "plan", help="sample size, minimum detectable effect and days to run, for the always-valid readout")
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="records to read the baseline rate and daily traffic of each slot from "
                        "(as for lift); none: give --baseline and --daily-visitors")
    parser.add_argument("--config", help="personalize.yaml: each slot's holdout share")
    parser.add_argument("--slot", help="plan this slot only")
    add_effect_arguments(parser)
    parser.add_argument("--baseline", type=float, help="conversion rate without the variant (0.05 = 5 %%)")
    parser.add_argument("--daily-visitors", type=float, help="visitors a day entering the experiment, both arms")
    parser.add_argument("--holdout-share", type=float, help="share of visitors held out (default: the config's, "
                        "else 0.5)")
    parser.add_argument("--comparisons", type=int, default=1,
                        help="tests the readout corrects across (Holm): each variant's conversion test, and its "
                        "revenue test when conversions have a value (default 1)")
    parser.add_argument("--goal", help="count only conversions of this goal")
    parser.add_argument("--window-days", type=days_argument, default=30.0, help="as for lift (default 30)")
    parser.add_argument("--skip-bad-lines", action="store_true", help="as for lift")
    add_until_argument(parser)  # the plan as of then: its traffic and progress
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.set_defaults(run=run)


def _inputs(args: argparse.Namespace) -> dict[str, tuple[float, float, int]]:
    # Figures given are checked as given: out of range, they must not read as what the records said.
    if args.baseline is not None and not 0 < args.baseline < 1:
        raise ValueError(f"--baseline must be a rate between 0 and 1 (0.05 = 5 %), not {args.baseline}")
    if args.daily_visitors is not None and not args.daily_visitors >= 0:
        raise ValueError(f"--daily-visitors must be 0 or more, not {args.daily_visitors}")
    if not args.inputs:
        if args.baseline is None or args.daily_visitors is None:
            raise ValueError("give records to read, or --baseline and --daily-visitors")
        return {args.slot or "experiment": (args.baseline, args.daily_visitors, 0)}
    from .source import open_source, read_once

    con = read_once(open_source(args.inputs, skip_bad_lines=args.skip_bad_lines, until=args.until))
    try:
        found = planning.observed(con, window_days=args.window_days, goal=args.goal)
    finally:
        con.close()
    if args.slot is not None:
        found = {k: v for k, v in found.items() if k == args.slot}
    # Figures given on the command line win over what the records say.
    return {slot: (args.baseline if args.baseline is not None else rate,
                   args.daily_visitors if args.daily_visitors is not None else daily, seen)
            for slot, (rate, daily, seen) in found.items()}


def plans(args: argparse.Namespace) -> tuple[list[planning.Plan], list[str]]:
    """The plans, and the slots that cannot be planned from what the records say (and why)."""
    from .lift_command import config_holdout_shares

    shares = config_holdout_shares(args.config) if args.config else {}
    made, skipped = planning.plans_for(_inputs(args), lambda slot: args.holdout_share if args.holdout_share is not None
                                       else shares.get(slot, 0.5),
                                       mde=args.mde, relative_mde=args.relative_mde, power=args.power,
                                       comparisons=args.comparisons)
    return made, [f"{reason}; give --baseline" for reason in skipped]


def grid(rows: Sequence[planning.Plan]) -> Grid:
    out = Grid("Visitors an experiment needs (always-valid readout; fixed horizon for comparison)", "slot",
               ("baseline", "visitors/day", "holdout", "lift to detect", "power", "visitors needed",
                "fixed horizon", "days", "so far"))
    for row in rows:
        out.add_row(row.slot, f"{row.baseline:.2%}", f"{row.daily_visitors:,.0f}", f"{row.holdout_share:.0%}",
                    f"{row.mde * 100:+.2f} pp", f"{row.power:.0%}",
                    "out of reach" if row.visitors is None else f"{row.visitors:,}",
                    "–" if row.visitors_fixed_horizon is None else f"{row.visitors_fixed_horizon:,}",
                    "–" if row.days is None else f"{row.days:,.1f}",
                    "–" if row.progress is None else f"{row.progress:.0%}")
    return out


def run(args: argparse.Namespace) -> int:
    import duckdb

    try:
        rows, skipped = plans(args)
    except (OSError, ValueError, duckdb.Error) as exc:  # e.g. a record whose ts is not a timestamp
        print(f"plan: {exc}", file=sys.stderr)
        return 1
    for reason in skipped:
        print(f"plan: {reason}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps({"method": METHOD, "until": until_json(args.until), "plans": [row.as_dict() for row in rows],
                          "skipped": skipped}, indent=2))
        return 0
    from .terminal import console as open_console
    from .terminal import show

    console = open_console()
    if not rows:
        console.print("No slot with a holdout in these records: nothing to plan from (give --baseline and "
                      "--daily-visitors to plan a new experiment).")
        return 0
    show(console, grid(rows))
    return 0
