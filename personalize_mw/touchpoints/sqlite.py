"""The embedded SQL sink: one SQLite file, shared safely by the worker processes of a server.

URL: ``sqlite:PATH`` (relative to the YAML file's folder), optionally
``?table=NAME``. The connection is :mod:`personalize_mw.storage.sqlite`'s:
WAL mode lets readers (reports, ``personalize-mw export``) work while
writers append; the busy timeout makes processes wait their turn for the
write lock instead of failing. Each batch is one transaction of
``INSERT OR IGNORE``: ``id`` is the primary key, so a batch replayed after a
lost acknowledgement changes nothing. ``utm``, ``consent``, ``props`` and any
other nested value are stored as JSON text.

The table is created on first use with an index on ``visitor`` and on ``ts``;
a field added to the record schema later becomes a new column on the next
start (``ALTER TABLE ADD COLUMN``), so an old file keeps working.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..storage import Location, table_names
from ..storage import sqlite as sqlite_db
from ..storage.schemes import DEFAULT_TABLE
from .encoding import to_json
from .record import FIELDS

if TYPE_CHECKING:
    from ..config import HttpSinkConfig

BUSY_TIMEOUT_MS = 10_000
_TYPES = {"id": "TEXT PRIMARY KEY NOT NULL", "schema": "INTEGER", "value": "REAL", "holdout_share": "REAL"}
EXTRA = "extra"  # fields a record has beyond the known ones, as one JSON object


class SqliteSink:
    max_batch = 5000  # one transaction for what a worker that fell behind has waiting

    def __init__(self, path: str | Path, table: str = DEFAULT_TABLE) -> None:
        table_names(table)  # raises unless an identifier
        self.path = Path(path)
        self.table = table
        self.columns = (*FIELDS, EXTRA)
        self._known = frozenset(FIELDS)
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()
        names = ", ".join(f'"{c}"' for c in self.columns)
        self._insert = (f'INSERT OR IGNORE INTO "{table}" ({names}) '
                        f"VALUES ({', '.join('?' * len(self.columns))})")

    # ------------------------------------------------------------ connection

    def connect(self) -> sqlite3.Connection:
        """The connection of this process, opened (and the table made) on first use."""
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A connection must not cross a fork (SQLite's rule): a child opens its own.
        conn = sqlite_db.connect(self.path, BUSY_TIMEOUT_MS / 1000)
        try:
            self._create(conn)
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on this process's connection, in turn with the sink's own batches."""
        with self._lock:
            with sqlite_db.transaction(self.connect()) as conn:
                yield conn

    def checkpoint(self) -> None:
        """Copy the WAL into the file and empty it: after a delete, the old rows leave the -wal file too."""
        with self._lock:
            self.connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _create(self, conn: sqlite3.Connection) -> None:
        table = self.table
        with sqlite_db.transaction(conn):  # one process at a time creates or alters
            columns = ", ".join(f'"{c}" {_TYPES.get(c, "TEXT")}' for c in self.columns)
            conn.execute(f'CREATE TABLE IF NOT EXISTS "{table}" ({columns})')
            have = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')}
            for column in self.columns:
                if column not in have:
                    conn.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {_TYPES.get(column, "TEXT")}')
            conn.execute(f'CREATE INDEX IF NOT EXISTS "{table}_visitor" ON "{table}" (visitor)')
            conn.execute(f'CREATE INDEX IF NOT EXISTS "{table}_ts" ON "{table}" (ts)')

    # ------------------------------------------------------------ writing

    def _row(self, record: dict[str, Any]) -> tuple[Any, ...]:
        values = []
        for field in FIELDS:
            value = record.get(field)
            if value is not None and value.__class__ not in (str, int, float, bool):
                value = to_json(value)  # utm, consent, props: JSON text
            values.append(value)
        extra = None
        if not record.keys() <= self._known:
            extra = to_json({k: v for k, v in record.items() if k not in self._known})
        values.append(extra)
        return tuple(values)

    def write(self, records: list[dict[str, Any]]) -> None:
        rows = [self._row(r) for r in records]
        with self.transaction() as conn:
            conn.executemany(self._insert, rows)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def sink_for(location: Location, http: HttpSinkConfig | None = None) -> SqliteSink:
    """The registry's entry point: ``sqlite:PATH[?table=NAME]``."""
    assert location.path is not None
    return SqliteSink(location.path, location.table[0])
