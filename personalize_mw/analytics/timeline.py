"""Readouts as of a past moment (``--until``), and each interval's path by day (issue 11, item 8).

A readout as of a moment T reads only the records at or before T: the same
figures a readout run at T would have shown, had every record of then been
written by then. :func:`.source.open_source` applies T to the ``touchpoints``
view for the DuckDB readouts, :func:`records_until` to an iterable of records
for :func:`.lift.lift`.

The path of a variant's always-valid interval is that readout taken as of the
end of each day (UTC), from the first day with an experiment exposure to the
last day of the records: the interval a person opening the report each evening
would have seen. Drawn by day it shows a novelty effect (a lift that is large in
the first days and shrinks) that the last interval alone hides.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from . import readout
from .lift import outcomes_sql, parse_ts
from .source import as_of

_TICK = timedelta(microseconds=1)  # the finest step of a DuckDB timestamp


def parse_until(text: str) -> datetime:
    """An ISO 8601 timestamp (no zone: UTC) or a date (its end: records through 23:59:59.999999 UTC count).

    Raises ValueError naming the accepted forms.
    """
    value = text.strip()
    try:
        if len(value) == 10:  # YYYY-MM-DD
            return end_of_day(date.fromisoformat(value))
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 timestamp (e.g. 2026-11-20T18:00:00Z, "
                         "2026-11-20T18:00:00+01:00 or the date 2026-11-20 for the end of that day)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def until_argument(text: str) -> datetime:
    """:func:`parse_until` as an argparse type: a bad value is a usage error, not a traceback."""
    try:
        return parse_until(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def until_json(until: datetime | None) -> str | None:
    """The moment as the JSON output states it: UTC, ISO 8601; null for a readout of every record."""
    return None if until is None else until.isoformat().replace("+00:00", "Z")


def end_of_day(day: date) -> datetime:
    """The last instant of a UTC day that a timestamp can hold."""
    return datetime.combine(day + timedelta(days=1), time(), UTC) - _TICK


def records_until(records: Iterable[Mapping[str, Any]], until: datetime | None) -> Iterator[Mapping[str, Any]]:
    """The records at or before ``until`` (every record for None), for :func:`.lift.lift`."""
    for rec in records:
        if until is None or parse_ts(rec["ts"]) <= until:
            yield rec


@dataclass(frozen=True)
class DayInterval:
    """A variant's always-valid 95 % interval of the absolute lift as of the end of ``day``."""
    day: str  # YYYY-MM-DD, UTC
    lift: float
    low: float
    high: float
    visitors: int  # both arms, as of then


def interval_paths(con: Any, *, window_days: float = 30.0, goal: str | None = None,
                   until: datetime | None = None) -> dict[str, list[DayInterval]]:
    """Per ``slot:variant``, its interval as of the end of each day (days before both arms have
    visitors are left out). ``until``: the moment the ``touchpoints`` view was opened at; the last
    day's readout stops there, and the view is left as it was found.
    """
    # One copy of the rows a readout reads, so that each day's readout does not parse the inputs again.
    con.execute("CREATE OR REPLACE TEMP TABLE pmw_path AS SELECT * FROM touchpoints "
                "WHERE type IN ('exposure', 'conversion', 'pageview')")
    try:
        first, last = con.execute(
            "SELECT min(ts) FILTER (WHERE type = 'exposure' AND arm IN ('treatment', 'holdout'))::DATE, "
            "max(ts)::DATE FROM pmw_path").fetchone()
        paths: dict[str, list[DayInterval]] = {}
        if first is None:
            return paths
        for ordinal in range(first.toordinal(), last.toordinal() + 1):
            day = date.fromordinal(ordinal)
            cutoff = end_of_day(day) if until is None else min(end_of_day(day), until)
            as_of(con, cutoff, base="pmw_path")
            for (slot, variant), out in outcomes_sql(con, window_days=window_days, goal=goal).items():
                t, h = out.treatment, out.holdout
                if t.visitors and h.visitors:
                    lift, low, high = readout.sequential_difference(t.converted, t.visitors, h.converted,
                                                                    h.visitors)
                    paths.setdefault(f"{slot}:{variant}", []).append(
                        DayInterval(day.isoformat(), lift, low, high, t.visitors + h.visitors))
        return paths
    finally:
        as_of(con, until)
        con.execute("DROP TABLE IF EXISTS pmw_path")
