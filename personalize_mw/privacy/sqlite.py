"""The privacy interface for the sqlite sink's table.

Deletes run with ``secure_delete`` on (freed pages are zeroed, so the bytes
do not linger in the file) and end with a WAL checkpoint (the old pages leave
the ``-wal`` file too). ``user`` gets a partial index on first use: only
``identify`` records carry one, and forget looks them up by it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from ..storage import Location
from ..touchpoints.encoding import from_json
from ..touchpoints.sqlite import EXTRA, SqliteSink, sink_for
from .store import Person

_JSON_COLUMNS = ("utm", "consent", "props")


class SqliteStore:
    def __init__(self, sink: SqliteSink, label: str) -> None:
        self.sink = sink
        self.label = label
        self._table = f'"{sink.table}"'
        self._ready = False

    def _conn(self) -> sqlite3.Connection:
        conn = self.sink.connect()  # creates the table if this file has none yet
        if not self._ready:
            conn.execute(f'CREATE INDEX IF NOT EXISTS "{self.sink.table}_user" ON {self._table} ("user") '
                         'WHERE "user" IS NOT NULL')
            conn.execute("PRAGMA secure_delete = ON")
            self._ready = True
        return conn

    @staticmethod
    def _where(person: Person) -> tuple[str, list[str]]:
        visitors, users = sorted(person.visitors), sorted(person.users)
        clause = (f'(visitor IN ({",".join("?" * len(visitors)) or "NULL"}) '
                  f'OR "user" IN ({",".join("?" * len(users)) or "NULL"}))')
        return clause, visitors + users

    def links(self, person: Person) -> set[tuple[str, str]]:
        where, params = self._where(person)
        rows = self._conn().execute(
            f"SELECT visitor, \"user\" FROM {self._table} WHERE type = 'identify' AND {where} "
            "AND visitor IS NOT NULL AND \"user\" IS NOT NULL", params)
        return {(visitor, user) for visitor, user in rows}

    def export(self, person: Person) -> Iterator[dict[str, Any]]:
        where, params = self._where(person)
        cursor = self._conn().execute(f"SELECT * FROM {self._table} WHERE {where} ORDER BY ts", params)
        names = [d[0] for d in cursor.description]
        for row in cursor:
            yield _record(dict(zip(names, row, strict=True)))

    def _delete(self, where: str, params: list[str]) -> int:
        conn = self._conn()
        with self.sink.transaction():  # in turn with the sink's own batches in this process, if any
            count = conn.execute(f"DELETE FROM {self._table} WHERE {where}", params).rowcount
        self.sink.checkpoint()
        return count

    def forget(self, person: Person) -> int:
        return self._delete(*self._where(person))

    def prune(self, before: str) -> int:
        return self._delete("ts < ?", [before])


def store_for(location: Location) -> SqliteStore:
    """The registry's entry point: the table of a ``sqlite:PATH[?table=NAME]`` sink."""
    return SqliteStore(sink_for(location), location.label)


def _record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the record it was: JSON columns decoded, extra fields merged back."""
    for column in _JSON_COLUMNS:
        if isinstance(row.get(column), str):
            row[column] = from_json(row[column])
    extra = row.pop(EXTRA, None)
    if extra:
        row.update(from_json(extra))
    if isinstance(row.get("value"), float) and row["value"].is_integer():
        row["value"] = int(row["value"])  # stored REAL; 50 was written as 50
    return row
