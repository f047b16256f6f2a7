"""The touchpoint record schema: one JSON object per line, fixed field order.

Records are built on the request path without their ``id`` and ``ts``
strings; the sink worker stamps both before the first write (see
:func:`finalize`), which keeps uuid4 and date formatting off the request path.
The raw epoch seconds travel in ``_t`` until then.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

# 2 added the identify, event and suppress types and the user, event, props and ip fields.
SCHEMA_VERSION = 2
TYPES = ("pageview", "exposure", "conversion", "identify", "event", "suppress")
FIELDS = ("id", "ts", "schema", "type", "visitor", "session", "user", "path", "referrer_host", "channel",
          "utm", "slot", "variant", "rule", "arm", "goal", "value", "event", "props", "ip", "consent")


def new_record(
    kind: str, t: float, *, visitor: str | None, session: str | None, path: str,
    referrer_host: str | None, channel: str, utm: dict[str, str | None], consent: dict[str, bool],
    slot: str | None = None, variant: str | None = None, rule: str | None = None,
    arm: str | None = None, goal: str | None = None, value: float | None = None,
    user: str | None = None, event: str | None = None, props: dict[str, Any] | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    return {"id": None, "ts": None, "schema": SCHEMA_VERSION, "type": kind, "visitor": visitor,
            "session": session, "user": user, "path": path, "referrer_host": referrer_host,
            "channel": channel, "utm": utm, "slot": slot, "variant": variant, "rule": rule, "arm": arm,
            "goal": goal, "value": value, "event": event, "props": props, "ip": ip, "consent": consent,
            "_t": t}


def format_ts(t: float) -> str:
    """RFC 3339, UTC, milliseconds: 2026-11-24T10:15:30.123Z."""
    moment = datetime.fromtimestamp(t, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def finalize(record: dict[str, Any]) -> dict[str, Any]:
    """Stamp id and ts once; idempotent, so a retried record keeps its id."""
    if record.get("id") is None:
        record["id"] = str(uuid.uuid4())
    t = record.pop("_t", None)
    if record.get("ts") is None:
        record["ts"] = format_ts(t if t is not None else datetime.now(timezone.utc).timestamp())
    return record
