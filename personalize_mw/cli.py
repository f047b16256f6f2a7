"""The ``personalize-mw`` command.

    personalize-mw check personalize.yaml                  validate a config as start-up would
    personalize-mw forget ID [--config personalize.yaml]   erase a person's records (erasure request)
    personalize-mw export ID [--config ...] [--output F]   everything held about a person, as JSON
    personalize-mw prune [--config ...] [--days N]         delete records older than retention_days
    personalize-mw import-conversions deals.csv --user-column C --date-column C --goal G   deals closed offline
    personalize-mw attribution INPUT... [--by channel|content|variant] [--model M|all]   credit per touch
    personalize-mw lift INPUT... [--holdout-share S | --config personalize.yaml]      causal lift per variant
    personalize-mw report INPUT... --out report.html                                 one self-contained HTML report
    personalize-mw simulate --visitors 10000 --out touchpoints.jsonl                 synthetic visitors, known truth
    personalize-mw suggest segments INPUT... [--config personalize.yaml] [--out F]  segments found, as YAML
    personalize-mw suggest actions INPUT... --config personalize.yaml [--by F]     promote/stop/retire, as a patch
    personalize-mw compact INPUT... --out touchpoints.parquet                      the inputs as Parquet, read fast
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .errors import ConfigError

EXAMPLE = "example_site/personalize.yaml"  # the repository's example config


def load_or_status(path: str, hint: str = f"--config {EXAMPLE}") -> Config | int:
    """The config, or the exit status once the reason is printed: 2 no such file, 1 problems in it."""
    if not Path(path).exists():
        print(f"personalize-mw: no config file {path} (looked for {Path(path).resolve()}); "
              f"from the repository's root, try {hint}", file=sys.stderr)
        return 2
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} in {path}", file=sys.stderr)
        return 1


def _check(args: argparse.Namespace) -> int:
    config = load_or_status(args.config, f"personalize-mw check {EXAMPLE}")
    if isinstance(config, int):
        return config
    rules = sum(len(slot.rules) for slot in config.slots.values())
    print(f"{args.config}: OK — {len(config.segments)} segments, {len(config.goals)} goals, "
          f"{len(config.slots)} slots, {rules} rules, sink {config.sink}")
    from .rules.schedule import ended

    for line in ended(config, time.time()):
        print(f"warning: {line}")
    return 0


def _forget(args: argparse.Namespace) -> int:
    from .privacy import forget_person

    config = load_or_status(args.config)
    if isinstance(config, int):
        return config
    report = forget_person(config, args.id)
    devices = {visitor for visitor, _ in report.links}
    users = {user for _, user in report.links}
    print(f"{args.id}: identify links followed to {len(devices)} visitor id(s) and {len(users)} user id(s)")
    for label, count in report.deleted.items():
        print(f"  {label}: {count} record(s) deleted")
    for label, count in report.suppressed.items():
        print(f"  {label}: {count} suppress record(s) sent")
    for note in report.notes:
        print(f"  note: {note}")
    for label, error in report.failed.items():
        print(f"  {label}: FAILED: {error}", file=sys.stderr)
    if report.still_spooled:
        print(f"  {report.still_spooled} record(s) of this person still wait in the spool for a sink that "
              "was down; run forget again once they are delivered", file=sys.stderr)
    if report.failed:
        return 1
    return 0 if report.complete else 2


def _export(args: argparse.Namespace) -> int:
    from .privacy import export_person

    config = load_or_status(args.config)
    if isinstance(config, int):
        return config
    answer = export_person(config, args.id)
    for label, error in answer["unreadable"].items():
        print(f"{label}: not read, this export is incomplete: {error}", file=sys.stderr)
    status = 1 if answer["unreadable"] else 0
    text = json.dumps(answer, ensure_ascii=False, indent=2) + "\n"
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return status
    output = Path(args.output)
    temp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # personal data: owner only
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temp, output)
    print(f"{args.id}: written to {output}", file=sys.stderr)
    return status


def _prune(args: argparse.Namespace) -> int:
    from .privacy import prune_records

    config = load_or_status(args.config)
    if isinstance(config, int):
        return config
    days = args.days if args.days is not None else config.retention_days
    status = 0
    for label, count in prune_records(config, days).items():
        if isinstance(count, str):
            print(f"{label}: FAILED: {count}", file=sys.stderr)
            status = 1
        else:
            print(f"{label}: {count} record(s) older than {days} days deleted")
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personalize-mw", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a personalize.yaml; exit 1 on any problem")
    check.add_argument("config", help="path to personalize.yaml")
    check.set_defaults(run=_check)
    config_help = "path to personalize.yaml (default: personalize.yaml)"
    forget = commands.add_parser("forget", help="delete a person's records, following identify links; "
                                 "exit 1 if a sink failed, 2 if records still wait in a spool")
    forget.add_argument("id", help="a visitor id, or a user id as your app knows it")
    forget.add_argument("--config", default="personalize.yaml", help=config_help)
    forget.set_defaults(run=_forget)
    export = commands.add_parser("export", help="write everything held about a person as JSON")
    export.add_argument("id", help="a visitor id, or a user id as your app knows it")
    export.add_argument("--config", default="personalize.yaml", help=config_help)
    export.add_argument("--output", "-o", help="file to write (mode 600); default: standard output")
    export.set_defaults(run=_export)
    prune = commands.add_parser("prune", help="delete records older than retention_days (run it daily)")
    prune.add_argument("--config", default="personalize.yaml", help=config_help)
    prune.add_argument("--days", type=int, help="override retention_days for this run")
    prune.set_defaults(run=_prune)
    _add_analytics(commands)
    from .offline.command import add_parser as add_import
    from .preview_command import add_parser as add_preview

    add_preview(commands)
    add_import(commands)
    return parser


ANALYTICS_MODULES = ("duckdb", "numpy", "rich", "sklearn", "stepmix")  # the analytics extra of pyproject.toml
ANALYTICS_COMMANDS = ("attribution", "lift", "report", "simulate", "plan", "suggest", "compact")


def _add_analytics(commands: Any) -> None:
    """The analytics commands, or without the analytics extra, ones that say how to get it."""
    try:
        from .analytics.command import add_parser as add_attribution
        from .analytics.compact_command import add_parser as add_compact
        from .analytics.lift_command import add_parsers as add_lift_report_simulate
        from .analytics.plan_command import add_parser as add_plan
        from .analytics.suggest_command import add_parser as add_suggest
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in ANALYTICS_MODULES:
            raise
        for name in ANALYTICS_COMMANDS:
            # No prefix character: every argument, --help too, reaches the message.
            stub = commands.add_parser(name, help="(needs the analytics extra)", add_help=False, prefix_chars="\0")
            stub.add_argument("ignored", nargs="*")
            stub.set_defaults(run=_needs_analytics)
        return
    add_attribution(commands)
    add_lift_report_simulate(commands)
    add_plan(commands)
    add_suggest(commands)
    add_compact(commands)


def _needs_analytics(args: argparse.Namespace) -> int:
    print(f"personalize-mw {args.command} needs the analytics extra ({', '.join(ANALYTICS_MODULES)}): "
          "pip install 'personalize_mw[analytics]' (in a checkout: pip install -e '.[analytics]')",
          file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ModuleNotFoundError as exc:  # a part of the extra missing (the commands import rich when they print)
        if args.command in ANALYTICS_COMMANDS and (exc.name or "").partition(".")[0] in ANALYTICS_MODULES:
            return _needs_analytics(args)
        raise
    except BrokenPipeError:  # `... | head`: the reader has what it wanted; say nothing more
        # Python flushes stdout again at exit and would print the same error: point it at devnull.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
