"""Time conditions: ``after``, ``before``, ``weekday`` and ``hour``, in the config's ``timezone``.

A moment (``after: 2026-12-01 09:00``) without an offset is wall-clock time in
the configured zone (zoneinfo, so daylight saving time moves with it); one with
an offset (``2026-12-01T09:00+01:00``) is that instant. ``after`` holds from its
moment on, ``before`` until just before it. ``weekday`` and ``hour`` read the
local time of the request's clock (the one the core was given), so a campaign
starts and ends by itself, and tests move the clock, not the system's.

They read neither the request nor the profile: they fire with or without consent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, time, tzinfo
from typing import TYPE_CHECKING, Any

from ..errors import ConditionError, KeyPath

if TYPE_CHECKING:
    from ..config import Config

TIME_FIELDS = ("after", "before", "weekday", "hour")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def moment(value: Any, zone: tzinfo, path: KeyPath) -> float:
    """Epoch seconds of a YAML date, datetime or ISO 8601 text; naive ones are wall-clock time in ``zone``."""
    when: datetime
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime.combine(value, time())
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConditionError(f"{value!r} is not a date and time (e.g. 2026-12-01 09:00, or "
                                 "2026-12-01T09:00+01:00)", path) from None
    else:
        raise ConditionError("a moment is a date and time, e.g. 2026-12-01 09:00", path)
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)  # fold=0: an ambiguous autumn hour means its first pass
    return when.timestamp()


def moment_test(field: str, spec: Any, path: KeyPath, zone: tzinfo) -> Callable[[Any, Any, float], bool]:
    at = moment(spec, zone, path)
    if field == "after":
        return lambda ctx, profile, now: now >= at
    return lambda ctx, profile, now: now < at


def weekday_test(spec: Any, path: KeyPath, zone: tzinfo) -> Callable[[Any, Any, float], bool]:
    """``weekday: sat`` or ``weekday: [mon, tue, wed, thu, fri]``, in the configured zone."""
    names = spec if isinstance(spec, list) else [spec]
    if not names or not all(isinstance(n, str) and n.lower()[:3] in WEEKDAYS for n in names):
        raise ConditionError(f"'weekday' takes a day or a list of days ({', '.join(WEEKDAYS)})", path)
    days = frozenset(WEEKDAYS.index(n.lower()[:3]) for n in names)
    return lambda ctx, profile, now: datetime.fromtimestamp(now, zone).weekday() in days


def local_hour(zone: tzinfo) -> Callable[[float], int]:
    """The hour (0-23) on the wall clock of ``zone``, for ``hour: {gte: 9, lt: 17}``."""
    return lambda now: datetime.fromtimestamp(now, zone).hour


def window_end(spec: Any, segments: Mapping[str, Any], zone: tzinfo, depth: int = 0) -> float | None:
    """The moment after which the condition can never hold again (its ``before``s), or None.

    Only what every match needs counts: ``before`` at the top, under ``all:``, in
    each branch of ``any:`` (the latest of them), or in a named segment; ``not:`` ends nothing.
    """
    if depth > 64:
        return None
    if isinstance(spec, str):
        return window_end(segments.get(spec), segments, zone, depth + 1)
    if not isinstance(spec, dict):
        return None
    ends: list[float] = []
    for key, value in spec.items():
        end: float | None = None
        if key == "before":
            try:
                end = moment(value, zone, ())
            except ConditionError:
                end = None
        elif key == "segment":
            end = window_end(value, segments, zone, depth + 1)
        elif key in ("all", "any") and isinstance(value, list) and value:
            parts = [window_end(v, segments, zone, depth + 1) for v in value]
            if key == "all":
                known = [p for p in parts if p is not None]
                end = min(known) if known else None
            else:
                end = None if any(p is None for p in parts) else max(p for p in parts if p is not None)
        if end is not None:
            ends.append(end)
    return min(ends) if ends else None


def ended(config: Config, now: float) -> list[str]:
    """What can never fire again at ``now``: one line per rule, journey stage or segment, for ``check``."""
    zone = config.zone
    segments = config.segments
    found: list[tuple[str, Any]] = [(f"segment {name}", spec) for name, spec in segments.items()]
    for slot_name, slot in config.slots.items():
        found += [(f"slots.{slot_name}.rules[{i}] ({rule.id or rule.variant})", rule.if_)
                  for i, rule in enumerate(slot.rules)]
    found += [(f"journey stage {stage.name}", stage.if_) for stage in config.journey.stages if stage.if_ is not None]
    lines = []
    for where, spec in found:
        end = window_end(spec, segments, zone)
        if end is not None and end <= now:
            shown = datetime.fromtimestamp(end, zone).strftime("%Y-%m-%d %H:%M %Z")
            lines.append(f"{where}: its window ended {shown} ({config.timezone}); it never fires again")
    return lines
