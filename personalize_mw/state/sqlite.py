"""Counters in one SQLite file: shared by the worker processes of one machine.

The connection and the write transaction are :mod:`personalize_mw.storage.sqlite`'s
(WAL: readers go on while one process writes; the busy timeout bounds how
long a call may wait on another process's lock). One connection per thread
and process (a connection must not cross a fork). ``?table=NAME`` names the
counters' table (``pmw_counters`` by default).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..storage import sqlite as sqlite_db
from ..storage import table_names
from .backend import Increment

if TYPE_CHECKING:
    from ..storage import Location

DEFAULT_TABLE = "pmw_counters"
# Setting up (WAL switch, schema) may wait for other workers starting at the
# same moment: a generous timeout for that, the store's own one afterwards.
_SETUP_TIMEOUT_S = 10.0


class SqliteBackend:
    def __init__(self, path: str | Path, timeout_s: float = 0.05, table: str = DEFAULT_TABLE) -> None:
        table_names(table)  # raises unless an identifier
        self.path = str(path)
        self.timeout_s = timeout_s
        self.table = table
        self._schema = (
            f'CREATE TABLE IF NOT EXISTS "{table}" (key TEXT NOT NULL, field TEXT NOT NULL, '
            "value REAL NOT NULL, PRIMARY KEY (key, field)) WITHOUT ROWID",
            f'CREATE INDEX IF NOT EXISTS "{table}_top" ON "{table}" (key, value DESC)',
        )
        self._upsert = (f'INSERT INTO "{table}" (key, field, value) VALUES (?, ?, ?) '
                        "ON CONFLICT (key, field) DO UPDATE SET value = value + excluded.value")
        self._read = f'SELECT field, value FROM "{table}" WHERE key = ?'
        self._top = f'SELECT field, value FROM "{table}" WHERE key = ? ORDER BY value DESC LIMIT ?'
        self._local = threading.local()
        self._conn()  # create the schema now: a bad path stops start-up, not a request

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = sqlite_db.connect(Path(self.path), _SETUP_TIMEOUT_S)
            try:
                with sqlite_db.transaction(conn):
                    for statement in self._schema:
                        conn.execute(statement)
                sqlite_db.set_busy_timeout(conn, self.timeout_s)
            except BaseException:
                conn.close()
                raise
            local.conn, local.pid = conn, os.getpid()
        return conn

    def incr(self, items: Sequence[Increment]) -> None:
        with sqlite_db.transaction(self._conn()) as conn:
            conn.executemany(self._upsert, items)

    def read(self, key: str) -> dict[str, float]:
        return dict(self._conn().execute(self._read, (key,)).fetchall())

    def top(self, key: str, k: int) -> list[tuple[str, float]]:
        return list(self._conn().execute(self._top, (key, k)).fetchall())

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def backend_for(location: Location, timeout_s: float) -> SqliteBackend:
    """The registry's entry point: ``sqlite:PATH[?table=NAME][&timeout_ms=N]``."""
    assert location.path is not None
    return SqliteBackend(location.path, timeout_s, location.table[0])
