"""Offline conversions as read from a CRM export: CSV or JSON lines, every cell checked.

A file from a CRM is outside input: a cell may be empty, hold a date in some
other format, a formula, a number with a currency sign, or megabytes of text.
Nothing is trusted: each row is checked whole (user id, date, amount), and
every row that fails is reported with its line number, so the file can be
fixed in one pass and nothing is imported half.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..core.identity import check_user_id
from ..errors import PersonalizeError
from ..touchpoints.encoding import from_json

FORMATS = ("csv", "jsonl")
MAX_CELL = 4096  # characters: an id, a date or an amount is far shorter
MAX_ID = 256  # a deal id, as long as a user id may be
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")  # no thousands separator: 1,500 is ambiguous
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)  # a date "tomorrow" in another time zone is today somewhere


class InputError(PersonalizeError, ValueError):
    """The file as a whole cannot be read (no such column, not CSV): nothing of it is imported."""


@dataclass(frozen=True)
class Columns:
    user: str
    date: str
    value: str | None = None  # None: the goal's configured value
    id: str | None = None  # the CRM's own deal id, if the file has one


@dataclass(frozen=True)
class Row:
    """A row that passed every check; ``value`` is not yet bounded (that needs the config)."""

    line: int
    user: str  # as in the file: identify() hashes it
    t: float  # epoch seconds
    value: float | None
    deal_id: str | None


def format_of(path: Path, given: str | None) -> str:
    if given is not None:
        return given
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".txt"):
        return "csv"
    raise InputError(f"{path}: say --format csv or --format jsonl (the name ends in {suffix or 'nothing'!r})")


def _csv_rows(path: Path, columns: Columns) -> Iterator[tuple[int, dict[str, Any] | None]]:
    # utf-8-sig: spreadsheets save CSV with a byte-order mark, which would stick to the first column's name.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [c for c in _named(columns) if c not in header]
        if missing:
            raise InputError(f"{path}: no column {missing[0]!r} (the header has {', '.join(map(repr, header))})")
        start = reader.line_num + 1
        for record in reader:
            yield start, record
            start = reader.line_num + 1


def _jsonl_rows(path: Path, columns: Columns) -> Iterator[tuple[int, dict[str, Any] | None]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    record = from_json(line)
                except ValueError:
                    record = None
                yield number, record if isinstance(record, dict) else None


def _named(columns: Columns) -> list[str]:
    return [c for c in (columns.user, columns.date, columns.value, columns.id) if c is not None]


def _cell(record: dict[str, Any], column: str) -> Any:
    """The cell, trimmed of surrounding spaces; ValueError if empty, missing or overlong."""
    value = record.get(column)
    if isinstance(value, str):
        if len(value) > MAX_CELL:
            raise ValueError(f"longer than {MAX_CELL} characters")
        value = value.strip()
    if value is None or value == "":
        raise ValueError("empty")
    return value


def check_deal_id(cell: Any) -> str:
    if isinstance(cell, bool) or not isinstance(cell, (str, int)) or len(str(cell)) > MAX_ID:
        raise ValueError(f"an id is text or a whole number of at most {MAX_ID} characters")
    return str(cell)


def parse_time(text: Any, now: float) -> float:
    """ISO 8601 date or date and time (a time without offset is UTC): epoch seconds, not in the future."""
    if not isinstance(text, str):
        raise ValueError("a date is text such as 2026-03-31 or 2026-03-31T16:05:00Z")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not an ISO 8601 date such as 2026-03-31 or 2026-03-31T16:05:00Z") \
            from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    t = (when - _EPOCH).total_seconds()
    if t < 0:
        raise ValueError(f"{text[:40]!r} is before 1970")
    if t > now + FUTURE_SLACK.total_seconds():
        raise ValueError(f"{text[:40]!r} is in the future")
    return t


def parse_value(cell: Any) -> float:
    """A finite number: a JSON number, or text such as 12500 or 12500.50 (no currency, no separators)."""
    if isinstance(cell, bool):
        raise ValueError("an amount is a number")
    if isinstance(cell, (int, float)):
        value = float(cell)
    elif isinstance(cell, str) and _NUMBER.match(cell):
        value = float(cell)
    else:
        raise ValueError(f"{str(cell)[:40]!r} is not a number such as 12500 or 12500.50")
    if not math.isfinite(value):
        raise ValueError("an amount is a finite number")
    return value


def _row(line: int, record: dict[str, Any] | None, columns: Columns, now: float) -> Row:
    if record is None:
        raise ValueError("not a JSON object")
    problems = []
    values: dict[str, Any] = {}
    checks = {"user": (columns.user, check_user_id), "t": (columns.date, lambda c: parse_time(c, now)),
              "value": (columns.value, parse_value), "deal_id": (columns.id, check_deal_id)}
    for name, (column, check) in checks.items():
        values[name] = None
        if column is not None:
            try:
                values[name] = check(_cell(record, column))
            except (TypeError, ValueError) as exc:
                problems.append(f"{column}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return Row(line, **values)


Problem = tuple[int, str]  # (line, what is wrong with the row)


def read_rows(path: Path, columns: Columns, file_format: str, now: float) -> tuple[list[Row], list[Problem]]:
    """(the good rows, a problem per bad row); InputError if the file cannot be read at all."""
    reader = _csv_rows if file_format == "csv" else _jsonl_rows
    rows: list[Row] = []
    problems: list[Problem] = []
    try:
        for line, record in reader(path, columns):
            try:
                rows.append(_row(line, record, columns, now))
            except ValueError as exc:
                problems.append((line, str(exc)))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: {exc}") from None
    return rows, problems
