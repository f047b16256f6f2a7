"""Records as JSON: the one encoder (and decoder) every writer and reader of records uses.

msgspec, measured against orjson and the standard library on the record
shape, in the batches a sink writes (bench/sinks.py, "encoding" table):
per record, msgspec's ``encode_lines`` stays near 1 µs from 100 to 10,000
records a batch, orjson ~1 µs at 100 but ~10 µs at 10,000 (one bytes object
per record, then a join: the allocator tires), the standard library's C
encoder ~8.7 µs. Anything msgspec refuses goes through the standard library
instead: an integer past 64 bits in ``props``, or a lone surrogate in a path
(another server or a plug-in can produce one), which becomes '?'. A record
is never lost to its encoding, and one odd record never stops a sink.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(enc_hook=str)
_decoder = msgspec.json.Decoder()
_fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
_REFUSED = (TypeError, ValueError, OverflowError, msgspec.EncodeError)


def to_json_bytes(record: Any) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return _encoder.encode(record)
    except _REFUSED:
        # "replace": a lone surrogate, which UTF-8 cannot hold, becomes '?'.
        return _fallback(record).encode("utf-8", "replace")


def to_json(record: Any) -> str:
    return to_json_bytes(record).decode("utf-8")


def lines_of(records: list[dict[str, Any]]) -> bytes:
    """A batch as JSON lines (one per record, each ending in a newline), ready for one write."""
    try:
        return _encoder.encode_lines(records)
    except _REFUSED:
        return b"".join([to_json_bytes(record) + b"\n" for record in records])


def line_of(record: dict[str, Any]) -> bytes:
    """One record as one line of bytes, newline included."""
    return lines_of([record])


def from_json(raw: bytes | str) -> Any:
    """Raises ValueError on anything that is not JSON.

    What msgspec refuses is tried with the standard library before it counts
    as not JSON: a line another writer made may hold an escaped lone surrogate
    (``"\\ud800"``), and privacy requests must still recognise its visitor.
    """
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        try:
            return json.loads(raw)
        except ValueError:
            raise ValueError(str(exc)) from None
