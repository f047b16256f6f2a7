"""``personalize-mw compact``: the analytics' columns of any input, once, as one Parquet file.

Every readout over JSON lines parses them whole, every time (bench/lift.py:
most of ``lift`` on ten million records). Parquet is columnar and typed: a
readout over it reads only the columns each query needs, and parses nothing.
The file holds the columns the analytics read (:data:`.source.COLUMNS`) of
every record, as :func:`.source.open_source` reads them from the inputs, so a
readout over it gives what a readout over the inputs gives.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from .command import add_until_argument


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("compact", help="the analytics' columns of the inputs as one Parquet file, "
                                 "which lift, report and attribution read much faster than JSON lines")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="what lift and report read: JSONL files, globs or folders, a sink URL")
    parser.add_argument("--out", required=True, help="the Parquet file to write, e.g. touchpoints.parquet")
    parser.add_argument("--skip-bad-lines", action="store_true",
                        help="skip JSONL lines that are not JSON (e.g. one torn by a crash) instead of stopping")
    add_until_argument(parser)
    parser.set_defaults(run=run)


def compact(inputs: list[str], out: Path, *, skip_bad_lines: bool = False,
            until: datetime | None = None) -> int:
    """Write ``out`` (replaced whole, mode 600: it holds visitor and user ids); the number of records."""
    import duckdb

    from .source import _quote as quote
    from .source import open_source

    if not out.name.endswith(".parquet"):
        raise ValueError(f"{out}: the output must end in .parquet, as the readouts recognise it")
    con = open_source(inputs, skip_bad_lines=skip_bad_lines, until=until)
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        # Sorted by type, then visitor and time: a row group holds one type, so a query for exposures
        # (or conversions) skips the others' row groups by their statistics, and a visitor's records
        # sit together. A quarter less CPU for lift on ten million records (docs/performance.md).
        con.execute(f"COPY (SELECT * FROM touchpoints ORDER BY type, visitor, ts) TO {quote(str(part))} "
                    "(FORMAT parquet, COMPRESSION zstd)")
        count = con.execute(f"SELECT count(*) FROM read_parquet({quote(str(part))})").fetchone()
        os.chmod(part, 0o600)
        os.replace(part, out)
    except (duckdb.Error, OSError):
        part.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    return int(count[0]) if count else 0


def run(args: argparse.Namespace) -> int:
    import duckdb

    out = Path(args.out)
    try:
        count = compact(args.inputs, out, skip_bad_lines=args.skip_bad_lines, until=args.until)
    except (OSError, ValueError, duckdb.Error) as exc:
        print(f"compact: {exc}", file=sys.stderr)
        return 1
    print(f"compact: {count:,} records into {out} ({out.stat().st_size / 1e6:,.1f} MB)")
    return 0
