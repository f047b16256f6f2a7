"""``personalize-mw import-conversions``: deals closed offline, credited to the visits that led to them.

    personalize-mw import-conversions deals.csv --user-column email --value-column amount \\
        --date-column closed_at --goal deal --config personalize.yaml

Exit status: 0 imported (or nothing new to import); 1 bad rows (nothing
imported; ``--skip-bad-rows`` imports the others) or a sink failed (run it
again: nothing is stored twice); 2 the file or the config cannot be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..core.events import check_name
from .rows import FORMATS, Columns, InputError, Problem, format_of, read_rows

MAX_SHOWN = 20  # bad rows listed one by one; the rest are counted


def _goal(text: str) -> str:
    try:
        return check_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "import-conversions", help="import deals closed offline (CSV or JSON lines) as conversions, joined to "
        "visitors through identify records; importing a file again adds nothing")
    parser.add_argument("file", help="a .csv (with a header row) or .jsonl file, one deal a row")
    parser.add_argument("--user-column", required=True,
                        help="the user id, exactly as the site passes it to identify() (e-mail, account key)")
    parser.add_argument("--date-column", required=True,
                        help="when the deal closed: ISO 8601, 2026-03-31 or 2026-03-31T16:05:00Z (no offset: UTC)")
    parser.add_argument("--value-column", help="the amount (12500 or 12500.50); default: the goal's value")
    parser.add_argument("--id-column", help="the CRM's deal id, if the file has one: two deals of one person on "
                        "one day for the same amount stay two")
    parser.add_argument("--goal", required=True, type=_goal, help="the goal name the conversions carry, e.g. deal")
    parser.add_argument("--config", default="personalize.yaml", help="path to personalize.yaml (its sinks and keys)")
    parser.add_argument("--format", choices=FORMATS, help="default: from the file name (.csv, .jsonl)")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="import the good rows when some are bad (each bad row is still listed)")
    parser.add_argument("--unmatched", choices=("skip", "keep"), default="skip",
                        help="a row whose user no identify record links to a visitor: skip it (default), or "
                        "keep it for a visit identified later")
    parser.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    parser.set_defaults(run=run)


def _problems(problems: list[Problem]) -> None:
    for line, problem in problems[:MAX_SHOWN]:
        print(f"  line {line}: {problem}", file=sys.stderr)
    if len(problems) > MAX_SHOWN:
        print(f"  ... and {len(problems) - MAX_SHOWN} more", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..cli import load_or_status
    from .importer import import_conversions, value_problems, with_values

    config = load_or_status(args.config)
    if isinstance(config, int):
        return config
    path = Path(args.file)
    columns = Columns(args.user_column, args.date_column, args.value_column, args.id_column)
    try:
        rows, problems = read_rows(path, columns, format_of(path, args.format), time.time())
    except InputError as exc:
        print(f"import-conversions: {exc}", file=sys.stderr)
        return 2
    rows = with_values(rows, args.goal, config)
    bounded = value_problems(rows, args.goal, config, args.value_column or "value")
    problems = sorted(problems + bounded)
    out_of_bounds = {line for line, _ in bounded}
    rows = [row for row in rows if row.line not in out_of_bounds]
    if problems:
        print(f"import-conversions: {path}: {len(problems)} bad row(s):", file=sys.stderr)
        _problems(problems)
        if not args.skip_bad_rows:
            print("import-conversions: nothing imported; fix the rows, or --skip-bad-rows imports the others",
                  file=sys.stderr)
            return 1
    report = import_conversions(config, rows, args.goal, keep_unmatched=args.unmatched == "keep",
                                dry_run=args.dry_run)
    verb = "would be " if args.dry_run else ""
    skipped = f", {len(problems)} bad and skipped" if problems else ""
    print(f"{path}: {report.rows + len(problems)} row(s) read{skipped}")
    if report.repeated:
        print(f"  {report.repeated} row(s) repeat an earlier row (same user, date and amount, or same "
              "--id-column): counted once")
    if report.unmatched:
        what = "kept" if args.unmatched == "keep" else "skipped (--unmatched keep imports them)"
        print(f"  {report.unmatched} row(s) have no identify record linking the user to a visitor: {what}")
    if not report.readable:
        print("  no sink of the config can be read (jsonl, sqlite, postgresql): identify records cannot be "
              "looked up and repeats cannot be told", file=sys.stderr)
    for label, count in report.written.items():
        print(f"  {label}: {count} conversion(s) {verb}written, {report.already.get(label, 0)} held already")
    for label, count in report.forwarded.items():
        print(f"  {label}: {count} conversion(s) {verb}sent (this sink cannot be read: repeats carry the same id)")
    for label, error in report.failed.items():
        print(f"  {label}: FAILED: {error}", file=sys.stderr)
    if report.failed:
        print("import-conversions: run the same import again once the sink is back: nothing is stored twice",
              file=sys.stderr)
        return 1
    return 0
