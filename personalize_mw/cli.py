"""The ``personalize-mw`` command.

    personalize-mw check personalize.yaml    validate a config as start-up would
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .config import load_config
from .errors import ConfigError


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} in {args.config}", file=sys.stderr)
        return 1
    rules = sum(len(slot.rules) for slot in config.slots.values())
    print(f"{args.config}: OK — {len(config.segments)} segments, {len(config.goals)} goals, "
          f"{len(config.slots)} slots, {rules} rules, sink {config.sink}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="personalize-mw", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a personalize.yaml; exit 1 on any problem")
    check.add_argument("config", help="path to personalize.yaml")
    check.set_defaults(run=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
