"""Offline conversions (deals closed in a CRM) into the config's sinks, joined to visitors later.

A row becomes a ``conversion`` record with no visitor and no session: its
``user`` is the row's user id as ``identify()`` stores it (the same
:class:`~personalize_mw.core.identity.UserIds`, so the same key and hash), and
the analytics join it to the visitors that ``identify`` records link to that
user (see :mod:`personalize_mw.analytics.source`). Nothing else of the row is
stored.

Idempotent: a record's id is a UUID 5 of the goal and the row (its deal id
column if given, else user, time and value), so importing a file again makes
the same ids. Sinks that can be read (jsonl, sqlite, postgresql, a python
store) are asked which ids they hold already, through the privacy interface
that forget and export use, and get only the new records; the SQL sinks also
ignore a repeated id. Sinks that only forward (http, redis, a plain python
sink) get every record again, with the same ids, for the system downstream to
drop repeats (the http sink sends the id as ``messageId``).

By default a row is imported only when its user has an ``identify`` record in
a sink that can be read: such a record exists only with the visitor's
consent, and a deal nobody can link to a visit credits nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..core.context import UTM_KEYS
from ..core.events import check_name, value_problem
from ..core.identity import UserIds
from ..privacy.requests import holders_of
from ..privacy.store import Person, Store
from ..storage import label as sink_label
from ..touchpoints.record import format_ts, new_record
from ..touchpoints.sink import open_sink
from .rows import Problem, Row

# The namespace of imported conversions' ids (a fixed UUID 5 of the project's name and purpose).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/personalize_mw/offline-conversions")
CHANNEL = "offline"
_NO_CONSENT_READ = {"analytics": False, "personalization": False, "advertising": False, "gpc": False}


def record_id(goal: str, stored_user: str, ts: str, value: float | None, deal_id: str | None) -> str:
    """The id a row's record gets, the same on every import of it."""
    name = f"deal\x1f{deal_id}" if deal_id is not None else f"row\x1f{stored_user}\x1f{ts}\x1f{value!r}"
    return str(uuid.uuid5(NAMESPACE, f"{goal}\x1f{name}"))


def conversion_record(row: Row, goal: str, user_ids: UserIds) -> dict[str, Any]:
    user = user_ids.stored(row.user)
    ts = format_ts(row.t)
    record = new_record("conversion", row.t, visitor=None, session=None, path="", referrer_host=None,
                        channel=CHANNEL, utm=dict.fromkeys(UTM_KEYS), consent=dict(_NO_CONSENT_READ),
                        goal=goal, value=row.value, user=user)
    record["id"] = record_id(goal, user, ts, row.value, row.deal_id)
    record["ts"] = ts
    del record["_t"]
    return record


def value_problems(rows: Sequence[Row], goal: str, config: Config, column: str = "value") -> list[Problem]:
    """Values out of bounds, as the event endpoint bounds them: the goal's max_value, else events.max_value."""
    configured = config.goals.get(goal)
    goal_max = configured.max_value if configured is not None else None
    problems = []
    for row in rows:
        problem = value_problem(goal, row.value, goal_max, config.events.max_value)
        if problem is not None:
            problems.append((row.line, f"{column}: {problem}"))
    return problems


def with_values(rows: Sequence[Row], goal: str, config: Config) -> list[Row]:
    """Rows without a value get the goal's configured value, as a conversion on the site does."""
    configured = config.goals.get(goal)
    default = configured.value if configured is not None else None
    return [row if row.value is not None else Row(row.line, row.user, row.t, default, row.deal_id) for row in rows]


@dataclass
class ImportReport:
    rows: int = 0
    repeated: int = 0  # rows with the id of an earlier row of the file (the same deal twice)
    unmatched: int = 0  # rows whose user no identify record links to a visitor: skipped unless kept
    written: dict[str, int] = field(default_factory=dict)  # sink label -> new records stored
    already: dict[str, int] = field(default_factory=dict)  # sink label -> records it held already
    forwarded: dict[str, int] = field(default_factory=dict)  # sink label -> records sent (cannot be read)
    failed: dict[str, str] = field(default_factory=dict)  # sink label -> error
    readable: int = 0  # sinks that could be searched for identify records


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _held(stores: list[Store], users: frozenset[str], report: ImportReport
          ) -> tuple[set[str], dict[str, set[str]]]:
    """(users some identify record links, {store label: ids of imported conversions it holds})."""
    person = Person(frozenset(), users)
    linked: set[str] = set()
    ids: dict[str, set[str]] = {}
    for store in stores:
        try:
            linked |= {user for _, user in store.links(person)}
            ids[store.label] = {str(r.get("id")) for r in store.export(person) if r.get("type") == "conversion"}
        except Exception as exc:  # any driver's error: reported, and nothing is written anywhere
            report.failed[store.label] = _failure(exc)
    return linked, ids


def _write(url: str, config: Config, records: list[dict[str, Any]]) -> None:
    sink = open_sink(url, config.resolve, config.http_sink)
    try:
        sink.write(records)  # one batch: one transaction in sqlite and postgresql, one write() in jsonl
    finally:
        sink.close()


def import_conversions(config: Config, rows: Sequence[Row], goal: str, *, keep_unmatched: bool = False,
                       dry_run: bool = False) -> ImportReport:
    """Write the rows' conversion records to every sink of ``config`` that lacks them."""
    check_name(goal)
    report = ImportReport(rows=len(rows))
    user_ids = UserIds.of(config)
    records: dict[str, dict[str, Any]] = {}
    for row in rows:
        record = conversion_record(row, goal, user_ids)
        if record["id"] in records:
            report.repeated += 1
        records[record["id"]] = record
    holders, _ = holders_of(config)
    report.readable = len(holders)
    linked, held = _held(holders, frozenset(r["user"] for r in records.values()), report)
    if report.failed:
        return report  # without knowing what a sink holds, writing could store a deal twice
    chosen = [r for r in records.values() if keep_unmatched or r["user"] in linked]
    report.unmatched = sum(1 for r in records.values() if r["user"] not in linked)
    by_label = {store.label: store for store in holders}
    for url in config.sinks:
        label = sink_label(url)
        have = held.get(label)
        new = chosen if have is None else [r for r in chosen if r["id"] not in have]
        if label in by_label:
            report.already[label] = len(chosen) - len(new)
        if new and not dry_run:
            try:
                _write(url, config, [dict(r) for r in new])
            except Exception as exc:  # one sink down must not stop the others; the report says which
                report.failed[label] = _failure(exc)
                continue
        (report.written if label in by_label else report.forwarded)[label] = len(new)
    return report
