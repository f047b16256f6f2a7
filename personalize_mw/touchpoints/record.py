"""The touchpoint record schema: one JSON object per line, fixed field order.

Records are built on the request path without their ``id`` and ``ts``
strings; the sink worker stamps both before the first write (see
:func:`finalize`), which keeps uuid4 and date formatting off the request path.
The raw epoch seconds travel in ``_t`` until then.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..core import compiled

if TYPE_CHECKING:
    from ..rules.protocol import Decision

# 2 added the identify, event and suppress types and the user, event, props and ip fields.
# 3 added ``experiment`` (and the arms holdout and unenrolled on exposures).
# 4 added ``holdout_share`` (the configured share an exposure's arm was assigned with), ``account``
# (identify(request, user, account=...): the buying group), and ``device`` and ``country`` (the request's
# device class and the country header: what ``lift --by`` breaks down by).
SCHEMA_VERSION = 4
TYPES = ("pageview", "exposure", "conversion", "identify", "event", "suppress")
FIELDS = ("id", "ts", "schema", "type", "visitor", "session", "user", "account", "path", "referrer_host", "channel",
          "device", "country", "utm", "slot", "variant", "rule", "arm", "experiment", "holdout_share",
          "goal", "value", "event", "props", "ip", "consent")


def new_record(
    kind: str, t: float, *, visitor: str | None, session: str | None, path: str,
    referrer_host: str | None, channel: str, utm: dict[str, str | None], consent: dict[str, bool],
    device: str | None = None, country: str | None = None,
    slot: str | None = None, variant: str | None = None, rule: str | None = None,
    arm: str | None = None, experiment: str | None = None, holdout_share: float | None = None,
    goal: str | None = None, value: float | None = None,
    user: str | None = None, account: str | None = None, event: str | None = None, props: dict[str, Any] | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    return {"id": None, "ts": None, "schema": SCHEMA_VERSION, "type": kind, "visitor": visitor,
            "session": session, "user": user, "account": account, "path": path, "referrer_host": referrer_host,
            "channel": channel, "device": device, "country": country, "utm": utm, "slot": slot, "variant": variant,
            "rule": rule, "arm": arm,
            "experiment": experiment, "holdout_share": holdout_share,
            "goal": goal, "value": value, "event": event, "props": props, "ip": ip, "consent": consent,
            "_t": t}


def from_template(template: dict[str, Any], kind: str, t: float, **fields: Any) -> dict[str, Any]:
    """A record from a request's template (see :func:`new_record`), which several records share.

    A copy of a ready dict is a fraction of building one from keyword arguments,
    and a page makes several records with the same visitor, path and consent.
    """
    record = template.copy()
    record["type"] = kind
    record["_t"] = t
    if fields:
        record.update(fields)
    return record


def exposure(template: dict[str, Any], slot: str, decision: Decision) -> dict[str, Any]:
    """An exposure record from the page's exposure template (``from_template(base, "exposure", now)``).

    One dict merge in C: a page's exposures share everything but these fields.
    """
    return template | {"slot": slot, "variant": decision.variant, "rule": decision.rule_id, "arm": decision.arm,
                       "experiment": decision.experiment, "holdout_share": decision.holdout_share}


# The formatted second of the last stamp: records come in bursts within one second,
# and strftime is most of the cost of a timestamp. (A race only recomputes it.)
_last_second: tuple[float, str] = (-1.0, "")
# The last stamp whole: a page's records share their request's time (a pageview and its exposures).
_last_stamp: tuple[float, str] = (math.nan, "")


def format_ts(t: float) -> str:
    """RFC 3339, UTC, milliseconds: 2026-11-24T10:15:30.123Z."""
    global _last_stamp
    last_t, stamp = _last_stamp
    if t == last_t:
        return stamp
    stamp = _format_ts(t)
    _last_stamp = (t, stamp)
    return stamp


def _format_ts(t: float) -> str:
    global _last_second
    fraction, second = math.modf(t)
    micro = round(fraction * 1_000_000)  # rounded to microseconds first, as datetime does
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    elif micro < 0:  # before 1970
        second, micro = second - 1, micro + 1_000_000
    cached_second, prefix = _last_second
    if second != cached_second:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        _last_second = (second, prefix)
    return f"{prefix}{micro // 1000:03d}Z"


# Byte maps setting the UUID version (4) and RFC 4122 variant bits, applied to all ids of a batch at once.
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT_RFC4122 = bytes((b & 0x3F) | 0x80 for b in range(256))


def _uuid4_strings_py(raw: bytes) -> list[str]:
    """Each 16 bytes of ``raw`` as a random UUID's string (uuid.uuid4() is a urandom call each)."""
    ids = bytearray(raw)
    ids[6::16] = ids[6::16].translate(_VERSION_4)  # every id's version byte in one C call
    ids[8::16] = ids[8::16].translate(_VARIANT_RFC4122)
    d = ids.hex()
    return [f"{d[i:i + 8]}-{d[i + 8:i + 12]}-{d[i + 12:i + 16]}-{d[i + 16:i + 20]}-{d[i + 20:i + 32]}"
            for i in range(0, len(d), 32)]


def finalize(record: dict[str, Any]) -> dict[str, Any]:
    """Stamp id and ts once; idempotent, so a retried record keeps its id."""
    if record.get("id") is None:
        record["id"] = str(uuid.uuid4())
    t = record.pop("_t", None)
    if record.get("ts") is None:
        record["ts"] = format_ts(t if t is not None else time.time())
    return record


class LazyRecord:
    """A record whose fields are worked out off the request path, by the first sink worker that takes it.

    For a page view that changes nothing in the response (no marker, no cookie):
    channel, referrer, UTM and consent are read in the sink's thread, after the
    page went out. ``build(*args)`` runs once, under the pipeline's stamp lock.

    ``build`` should be one long-lived callable and ``args`` what the request
    holds already: a record waits in memory for up to a flush interval, and a
    closure per record (its cells, its function, what it captures) would be
    some twenty objects each on the garbage collector's list until then.
    """

    __slots__ = ("_build", "_args", "_record")

    def __init__(self, build: Callable[..., dict[str, Any]], *args: Any) -> None:
        self._build: Callable[..., dict[str, Any]] | None = build
        self._args = args
        self._record: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        if self._record is None:
            assert self._build is not None
            self._record, self._build, self._args = self._build(*self._args), None, ()
        return self._record


def _stamp_of(t: float | None) -> str:
    """A record's ``ts`` from its ``_t``: the clock's time for a record that came without one."""
    return format_ts(t if t is not None else time.time())


def _stamp_records_py(records: list[Any], raw: bytes, stamp: Callable[[float | None], str]) -> bool:
    """Stamp each record without an id with the next 16 bytes of ``raw`` as its UUID, and its
    ``ts`` from its ``_t``; False, touching nothing, while lazy records are among them."""
    if any(type(r) is LazyRecord for r in records):
        return False
    fresh = [r for r in records if r.get("id") is None]
    for record, new_id in zip(fresh, _uuid4_strings_py(raw[: 16 * len(fresh)]), strict=True):
        record["id"] = new_id
    for record in records:
        t = record.pop("_t", None)
        if record.get("ts") is None:
            record["ts"] = stamp(t)
    return True


# The same in one C pass where it is built (core/compiled.py); it declines (False) unless every record is a dict.
_stamp_records: Callable[[list[Any], bytes, Callable[[float | None], str]], bool] = (
    compiled.scan.stamp_records if compiled.scan is not None else _stamp_records_py)


def finalize_batch(records: list[Any]) -> list[dict[str, Any]]:
    """:func:`finalize` for a batch, with one urandom call for all the new ids.

    Runs in the sink's thread on the request loop's GIL, a batch of thousands at
    once when the server is busy: the compiled pass costs a fraction of the Python loops.
    """
    raw = os.urandom(16 * len(records))
    if _stamp_records(records, raw, _stamp_of):
        return records
    records = [r.record() if type(r) is LazyRecord else r for r in records]
    if not _stamp_records(records, raw, _stamp_of):  # the compiled pass declines a mapping that is not a dict
        _stamp_records_py(records, raw, _stamp_of)
    return records
