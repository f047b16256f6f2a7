"""Records as JSON: the one encoder every sink and the spool use.

orjson, measured against msgspec and the standard library on the record
shape (bench/sinks.py): orjson and msgspec ~1.0-1.3 µs a record, the standard
library's C encoder ~8.7 µs. orjson it is, for its one-call API. Anything
orjson refuses (an integer past 64 bits in ``props``, say) goes through the
standard library instead: a record is never lost to its encoding.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS
_LINE = _OPTIONS | orjson.OPT_APPEND_NEWLINE
_fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def to_json_bytes(record: Any) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(record, default=str, option=_OPTIONS)
    except TypeError:
        return _fallback(record).encode("utf-8")


def to_json(record: Any) -> str:
    return to_json_bytes(record).decode("utf-8")


def line_of(record: dict[str, Any]) -> bytes:
    """One record as one line of bytes, newline included."""
    try:
        return orjson.dumps(record, default=str, option=_LINE)
    except TypeError:
        return (_fallback(record) + "\n").encode("utf-8")


def lines_of(records: Iterable[dict[str, Any]]) -> bytes:
    """A batch as JSON lines, ready for one write."""
    return b"".join([line_of(record) for record in records])


def from_json(raw: bytes | str) -> Any:
    return orjson.loads(raw)
