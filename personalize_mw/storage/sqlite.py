"""SQLite as every store here uses it: the connection settings and the write transaction, once.

Several processes of one server share a file (the sink's table, the
strategies' counters), so each connection is in WAL mode (readers go on
while one process writes), ``synchronous=NORMAL`` (in WAL mode that survives
a crashed process; only a power cut can lose the last commits) and has a
busy timeout (a process waits its turn for the write lock instead of
failing). Connections are in autocommit mode and may be used from any thread
of the process that opened them (the caller serialises writes); a
connection must never cross a fork, which SQLite forbids.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to ``path`` (its folder made if missing), set up as the module says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        set_busy_timeout(conn, busy_timeout_s)
        _use_wal(conn, busy_timeout_s)
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def _use_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    """WAL mode, waiting for a process that is switching the same new file at the same moment.

    The mode is kept in the file, so only its first opener switches it. Switching needs an
    exclusive lock, and SQLite answers "database is locked" at once there instead of
    calling the busy handler: two workers starting together on a new file met it. So
    read the mode first, and retry the switch within the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def set_busy_timeout(conn: sqlite3.Connection, seconds: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {max(1, int(seconds * 1000))}")


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection (analytics): never creates the file, never takes the write lock."""
    return sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception.

    IMMEDIATE takes the write lock at the start, where the busy timeout waits
    for it; a deferred transaction that reads first and then writes can fail
    at once with "database is locked" when another process wrote meanwhile.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
