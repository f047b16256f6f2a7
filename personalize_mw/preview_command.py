"""``personalize-mw preview-link``: a URL that shows an author one variant, in their browser only.

    personalize-mw preview-link --slot hero --variant pricing [--base-url https://example.com/pricing]
    personalize-mw preview-link --segment cpc-visitors [--slot hero] [--ttl 3600]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .core.preview import MAX_TTL, PARAM, PreviewCodec
from .rules.engine import compiled_slots


def preview_url(base_url: str, token: str) -> str:
    parts = urlsplit(base_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != PARAM]
    return urlunsplit(parts._replace(path=parts.path or "/", query=urlencode(query + [(PARAM, token)])))


def _run(args: argparse.Namespace) -> int:
    from .cli import load_or_status

    config = load_or_status(args.config)
    if isinstance(config, int):
        return config
    if args.variant is not None and args.slot is None:
        print("--variant needs --slot", file=sys.stderr)
        return 2
    slots = compiled_slots(config, check_only=True).slots  # a link needs no state store
    if args.slot is not None and args.slot not in slots:
        print(f"no slot {args.slot!r} in {args.config} (slots: {', '.join(slots) or 'none'})", file=sys.stderr)
        return 1
    chosen = [slots[args.slot]] if args.slot else list(slots.values())
    if not any(slot.preview(args.variant, args.segment) for slot in chosen):
        what = f"variant {args.variant!r}" if args.variant else f"segment {args.segment!r}"
        print(f"{what} is not shown by {'slot ' + args.slot if args.slot else 'any slot'}", file=sys.stderr)
        return 1
    token = PreviewCodec(config.secret_keys).make(args.slot, args.variant, args.segment, args.ttl)
    print(preview_url(args.base_url, token))
    return 0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "preview-link", help="print a signed, expiring URL forcing a variant in one browser (nothing recorded)")
    parser.add_argument("--config", default="personalize.yaml", help="path to personalize.yaml")
    parser.add_argument("--slot", help="the slot to force (required with --variant)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--variant", help="the variant to show")
    group.add_argument("--segment", help="show what visitors of this segment (or journey stage) see")
    parser.add_argument("--base-url", default="http://localhost:8000/", help="the page to open")
    parser.add_argument("--ttl", type=int, default=3600, help=f"seconds the link works (max {MAX_TTL})")
    parser.set_defaults(run=_run)
