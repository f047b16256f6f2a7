"""Counters in one SQLite file: shared by the worker processes of one machine.

WAL lets readers go on while one process writes; the busy timeout bounds how
long a call may wait on another process's lock. One connection per thread
and process (a connection must not cross a fork).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from .backend import Increment

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pmw_counters (
    key TEXT NOT NULL, field TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (key, field)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pmw_counters_top ON pmw_counters (key, value DESC);
"""
_UPSERT = ("INSERT INTO pmw_counters (key, field, value) VALUES (?, ?, ?) "
           "ON CONFLICT (key, field) DO UPDATE SET value = value + excluded.value")


_SETUP_TIMEOUT_S = 10.0


class SqliteBackend:
    def __init__(self, path: str | Path, timeout_s: float = 0.05) -> None:
        self.path = str(path)
        self.timeout_s = timeout_s
        self._local = threading.local()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn()  # create the schema now: a bad path stops start-up, not a request

    def _conn(self) -> sqlite3.Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            # Setting up (WAL switch, schema) may wait for other workers starting at the
            # same moment: a generous timeout for that, the store's own one afterwards.
            conn = sqlite3.connect(self.path, timeout=_SETUP_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # counters: losing the last second to a power cut is fine
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA busy_timeout={max(1, int(self.timeout_s * 1000))}")
            local.conn, local.pid = conn, os.getpid()
        return conn

    def incr(self, items: Sequence[Increment]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_UPSERT, items)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def read(self, key: str) -> dict[str, float]:
        rows = self._conn().execute("SELECT field, value FROM pmw_counters WHERE key = ?", (key,))
        return dict(rows.fetchall())

    def top(self, key: str, k: int) -> list[tuple[str, float]]:
        rows = self._conn().execute(
            "SELECT field, value FROM pmw_counters WHERE key = ? ORDER BY value DESC LIMIT ?", (key, k))
        return list(rows.fetchall())

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
