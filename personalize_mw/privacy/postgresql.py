"""The privacy interface for the postgresql sink's table.

Rows are found by the indexed ``visitor`` column and, for user ids, by
``record->>'user'`` under a partial expression index created on first use
(only ``identify`` rows and imported conversions carry a user; an index of
older versions covered ``identify`` rows alone, hence the new name). After a delete, ``VACUUM`` is tried so
the dead rows leave the table's pages; a role that may not vacuum gets a note.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from ..storage import Location
from ..touchpoints.postgresql import index_name
from .store import Person

_BY_PERSON = "(visitor = ANY(%(visitors)s) OR record->>'user' = ANY(%(users)s))"


class PostgresStore:
    """The table a ``postgresql://...[?table=NAME]`` sink writes, found from the same URL."""

    def __init__(self, location: Location) -> None:
        self.conninfo = location.address  # the URL without ?table=
        self.names = location.table
        self.table = sql.Identifier(*location.table)
        self.label = location.label
        self.notes: list[str] = []
        self._index_tried = False

    def _connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.conninfo, connect_timeout=10, application_name="personalize_mw privacy")
        if not self._index_tried:
            self._index_tried = True
            name = sql.Identifier(index_name(self.names, "person_user"))
            try:  # = ANY(...) implies IS NOT NULL, so the planner uses this partial index
                conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ((record->>'user')) "
                                     "WHERE record->>'user' IS NOT NULL").format(name, self.table))
                conn.commit()
            except psycopg.errors.UndefinedTable:
                conn.rollback()  # nothing written yet: nothing to find either
            except psycopg.Error as exc:  # no CREATE right: the queries still work, unindexed
                conn.rollback()
                self.notes.append(f"no index on record->>'user' ({exc.diag.message_primary})")
        return conn

    def _params(self, person: Person) -> dict[str, list[str]]:
        return {"visitors": sorted(person.visitors), "users": sorted(person.users)}

    def _query(self, query: sql.Composed, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._connect() as conn:
            try:
                return conn.execute(query, params).fetchall()
            except psycopg.errors.UndefinedTable:
                return []

    def links(self, person: Person) -> set[tuple[str, str]]:
        rows = self._query(sql.SQL("SELECT visitor, record->>'user' FROM {} WHERE type = 'identify' AND "
                                   + _BY_PERSON).format(self.table), self._params(person))
        return {(v, u) for v, u in rows if v and u}

    def export(self, person: Person) -> Iterator[dict[str, Any]]:
        rows = self._query(sql.SQL("SELECT record FROM {} WHERE " + _BY_PERSON + " ORDER BY ts").format(
            self.table), self._params(person))
        for (record,) in rows:
            yield record

    def _delete(self, where: str, params: dict[str, Any]) -> int:
        with self._connect() as conn:
            try:
                count = conn.execute(sql.SQL("DELETE FROM {} WHERE " + where).format(self.table),
                                     params).rowcount
            except psycopg.errors.UndefinedTable:
                return 0
            conn.commit()
            if count:
                conn.autocommit = True  # VACUUM cannot run inside a transaction
                try:
                    conn.execute(sql.SQL("VACUUM {}").format(self.table))
                except psycopg.Error as exc:
                    self.notes.append(f"VACUUM not run ({exc.diag.message_primary}); "
                                      "deleted rows stay in the table's pages until autovacuum")
        return count

    def forget(self, person: Person) -> int:
        return self._delete(_BY_PERSON, self._params(person))

    def prune(self, before: str) -> int:
        return self._delete("ts < %(before)s::timestamptz", {"before": before})


def store_for(location: Location) -> PostgresStore:
    """The registry's entry point."""
    return PostgresStore(location)
