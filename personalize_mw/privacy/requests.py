"""forget, export and prune over every sink of a config.

Who a person is: the id given (a visitor id, or a user id as given, which is
also hashed the way ``identify`` stores it), then one step along the
``identify`` links each way: the users linked to a given visitor id, and
every visitor id linked to those users (their other devices). A device
shared by two people who both logged in on it links both; the links stop
there, so a third person's records are never reached through a second.
``follow_links=False`` takes the id alone: the visitor's own request
(core/privacy_endpoint.py) proves a browser, not a person, and another user
of a shared browser must not reach the first's other devices through it.

Sinks that hold records (jsonl, sqlite, postgresql, a python sink that
implements :class:`~.store.Store`) delete and export. The others (http, redis,
a plain python sink) are sent one ``suppress`` record per id of the person
(never a raw user id when ids are hashed), for the system downstream to act on.
Dead-letter files are rewritten like sinks; records still waiting in a spool
(a sink was down) are counted, to forget again once they are delivered.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from .. import storage
from ..config import Config
from ..core.context import UTM_KEYS
from ..core.identity import UserIds
from ..storage import label as sink_label
from ..touchpoints.record import finalize, format_ts, new_record
from ..touchpoints.sink import open_sink
from .jsonl import JsonlFiles
from .store import Person, Store

_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")  # what core.visitor.new_id makes


def sink_urls(config: Config) -> list[str]:
    return [config.sink] if isinstance(config.sink, str) else list(config.sink)


def store_for(url: str, config: Config) -> Store | None:
    """The privacy interface of a sink that holds records; None for one that only forwards."""
    scheme = storage.scheme_of(url)
    if scheme is None or "privacy" not in scheme.roles:
        return None
    store: Store | None = storage.open_location(url, "privacy", config.resolve)
    return store


def _local(config: Config, pattern: str, label: str) -> JsonlFiles:
    directory = config.spool_path()
    return JsonlFiles(label, lambda: sorted(directory.glob(pattern)) if directory.is_dir() else [])


def dead_letters(config: Config) -> JsonlFiles:
    return _local(config, "*.dead.jsonl", "dead letters")


def spooled(config: Config) -> JsonlFiles:
    return _local(config, "*.spool", "spool")


def _failure(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def person_of(given: str, stores: list[Store], user_ids: UserIds, failed: dict[str, str],
              follow_links: bool = True) -> tuple[Person, set[tuple[str, str]]]:
    """The person ``given`` names, and the identify links (visitor, user) followed.

    A store that cannot be read is noted in ``failed`` and left out: one sink
    down must not stop the others.
    """
    start = Person(frozenset({given}), frozenset({given, user_ids.stored(given)}))
    links: set[tuple[str, str]] = set()
    if not follow_links:
        return start, links

    def follow(person: Person) -> None:
        for store in stores:
            if store.label not in failed:
                try:
                    links.update(store.links(person))
                except Exception as exc:
                    failed[store.label] = _failure(exc)

    follow(start)
    users = set(start.users) | {user for _, user in links}
    follow(Person(frozenset(), frozenset(users)))
    return Person(start.visitors | {visitor for visitor, _ in links}, frozenset(users)), links


def holders_of(config: Config) -> tuple[list[Store], list[str]]:
    holders, forwarders = [], []
    for url in sink_urls(config):
        store = store_for(url, config)
        if store is None:
            forwarders.append(url)
        else:
            holders.append(store)
    return holders, forwarders


def _user_ids(config: Config) -> UserIds:
    return UserIds.of(config)


# ---------------------------------------------------------------- forget


@dataclass
class ForgetReport:
    person: Person
    links: set[tuple[str, str]]  # the identify links followed
    deleted: dict[str, int] = field(default_factory=dict)  # store label -> records deleted
    suppressed: dict[str, int] = field(default_factory=dict)  # sink label -> suppress records sent
    failed: dict[str, str] = field(default_factory=dict)  # sink label -> error
    still_spooled: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed and not self.still_spooled


def suppress_records(person: Person, given: str, user_ids: UserIds, now: float) -> list[dict[str, Any]]:
    """One ``suppress`` record per id, never carrying a user id in a form the records do not hold."""
    visitors = {v for v in person.visitors if v != given or _VISITOR_ID.match(v)}
    users = set(person.users) - ({given} if user_ids.hashed and given != user_ids.stored(given) else set())
    utm = dict.fromkeys(UTM_KEYS)
    consent = {"analytics": False, "personalization": False, "advertising": False, "gpc": False}
    records = [new_record("suppress", now, visitor=v, session=None, path="", referrer_host=None, channel="",
                          utm=utm, consent=consent) for v in sorted(visitors)]
    records += [new_record("suppress", now, visitor=None, session=None, path="", referrer_host=None, channel="",
                           utm=utm, consent=consent, user=u) for u in sorted(users)]
    return [finalize(r) for r in records]


def forget_person(config: Config, given: str, now: float | None = None, *,
                  follow_links: bool = True) -> ForgetReport:
    holders, forwarders = holders_of(config)
    user_ids = _user_ids(config)
    letters = dead_letters(config)
    failed: dict[str, str] = {}
    person, links = person_of(given, holders + [letters], user_ids, failed, follow_links)
    report = ForgetReport(person, links, failed=failed)
    for store in holders + [letters]:
        if store.label in failed:
            continue
        try:
            report.deleted[store.label] = store.forget(person)
        except Exception as exc:  # one sink down must not stop the others
            failed[store.label] = _failure(exc)
        report.notes += getattr(store, "notes", [])
    if forwarders:
        records = suppress_records(person, given, user_ids, time.time() if now is None else now)
        for url in forwarders:
            label = sink_label(url)
            try:
                sink = open_sink(url, config.resolve)
                try:
                    sink.write(records)
                finally:
                    sink.close()
                report.suppressed[label] = len(records)
            except Exception as exc:
                failed[label] = _failure(exc)
    report.still_spooled = sum(1 for _ in spooled(config).export(person))
    return report


# ---------------------------------------------------------------- export


def export_person(config: Config, given: str, now: float | None = None, *,
                  follow_links: bool = True) -> dict[str, Any]:
    """Everything held about a person, as one JSON-ready object."""
    holders, forwarders = holders_of(config)
    letters, spool = dead_letters(config), spooled(config)
    failed: dict[str, str] = {}
    person, _ = person_of(given, holders + [letters], _user_ids(config), failed, follow_links)
    held: dict[str, list[dict[str, Any]]] = {}
    for store in holders + [letters, spool]:
        if store.label in failed:
            continue
        try:
            records = sorted(store.export(person), key=lambda r: str(r.get("ts") or ""))
        except Exception as exc:
            failed[store.label] = _failure(exc)
            continue
        if records or store in holders:
            held[store.label] = records
    everything = [r for records in held.values() for r in records]
    return {
        "request": "export", "id": given, "generated": format_ts(time.time() if now is None else now),
        "visitor_ids": sorted({r["visitor"] for r in everything if r.get("visitor")}),
        "user_ids": sorted({r["user"] for r in everything if r.get("user")}),
        "records": held,
        "forwarded_to": [sink_label(url) for url in forwarders],  # held downstream, not here
        "unreadable": failed,  # sinks that could not be read now: this export is incomplete
    }


# ---------------------------------------------------------------- prune


def prune_records(config: Config, days: int | None = None, now: float | None = None) -> dict[str, int | str]:
    """Delete records older than ``days`` (default ``retention_days``) from every sink that holds them.

    {store label: records deleted, or the error that stopped it}.
    """
    days = config.retention_days if days is None else days
    before = format_ts((time.time() if now is None else now) - days * 86400)
    holders, _ = holders_of(config)
    done: dict[str, int | str] = {}
    for store in holders + [dead_letters(config)]:
        try:
            done[store.label] = store.prune(before)
        except Exception as exc:  # the others are still pruned
            done[store.label] = _failure(exc)
    return done


