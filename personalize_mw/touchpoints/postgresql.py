"""The PostgreSQL sink: batched COPY through psycopg 3, a duplicate id ignored.

    sink: postgresql://user:password@db.internal:5432/analytics?table=touchpoints

Every libpq URL parameter works (``sslmode``, ``connect_timeout``...); ``table``
(default ``touchpoints``, optionally ``schema.table``) is ours, parsed by
:mod:`personalize_mw.storage.schemes` as for the privacy commands and analytics. The
table and its indexes are created on first use. A batch is COPied straight
into the table, as one transaction; a batch that repeats an id (replayed after
a lost acknowledgement) fails as a whole, and is then COPied into a temporary
table and moved with ``INSERT ... ON CONFLICT (id) DO NOTHING``, so it stores
nothing twice. A broken connection (server restart, failover) is dropped and
opened again at once, then on the queue's next retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ..storage import Location, locate
from .encoding import to_json as _to_json
from .sink import PermanentSinkError, SinkError

if TYPE_CHECKING:
    from ..config import HttpSinkConfig

_COLUMNS = ("id", "ts", "type", "visitor", "session", "record")


def index_name(table: tuple[str, ...], column: str) -> str:
    """The name of the index on ``column`` of the table (the privacy store adds one on ``user``)."""
    return f"{table[-1]}_{column}_idx"


# libpq settings unless the URL has its own: a dead server or a stuck statement must end in an
# error the queue retries, not in a worker blocked for the 15 minutes TCP takes to give up.
DEFAULT_PARAMS = {"connect_timeout": "10", "keepalives_idle": "30", "keepalives_interval": "10",
                  "keepalives_count": "3", "tcp_user_timeout": "60000",
                  "options": "-c statement_timeout=60000", "application_name": "personalize_mw"}


class PostgresSink:
    def __init__(self, url: str | Location) -> None:
        location = url if isinstance(url, Location) else locate(url, "sink")
        self.conninfo = location.address  # the URL without ?table=
        given = conninfo_to_dict(self.conninfo)
        self._params = {k: v for k, v in DEFAULT_PARAMS.items() if k not in given}
        self.names = location.table
        self.table = sql.Identifier(*self.names)
        self._conn: psycopg.Connection[Any] | None = None
        columns = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
        self._copy_direct = sql.SQL("COPY {} ({}) FROM STDIN").format(self.table, columns)
        self._copy = sql.SQL("COPY pmw_stage ({}) FROM STDIN").format(columns)
        self._move = sql.SQL("INSERT INTO {} SELECT * FROM pmw_stage ON CONFLICT (id) DO NOTHING").format(self.table)
        self._table_ready = False

    def _connect(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop_connection()
        # Autocommit: a COPY is a transaction by itself, without BEGIN and COMMIT round trips.
        conn = psycopg.connect(make_conninfo(self.conninfo, **self._params), autocommit=True)
        try:
            if not self._table_ready:
                self._create_table(conn)
            # One staging table per session, emptied by every commit.
            conn.execute(sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS pmw_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            ).format(self.table))
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _create_table(self, conn: psycopg.Connection[Any]) -> None:
        # An existing table needs no DDL, so a role with INSERT alone (no CREATE) can write.
        exists = conn.execute("SELECT to_regclass(%s)", (self.table.as_string(conn),)).fetchone()
        if exists is not None and exists[0] is not None:
            self._table_ready = True
            return
        statements = [sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, ts timestamptz NOT NULL, type text NOT NULL, "
            "visitor text, session text, record jsonb NOT NULL)").format(self.table)]
        for column in ("visitor", "ts", "type"):
            statements.append(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(index_name(self.names, column)), self.table, sql.Identifier(column)))
        # Two processes creating the table at once: the loser's CREATE fails on the
        # catalog's unique index; the advisory lock makes them take turns instead.
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('personalize_mw:create'))")
            for statement in statements:
                conn.execute(statement)
        self._table_ready = True

    def write(self, records: list[dict[str, Any]]) -> None:
        rows = [_row(r) for r in records]
        # A connection idle across a server restart fails on first use: one more try on a new one.
        for attempt in (1, 2):
            reused = self._conn is not None
            try:
                try:
                    self._store(self._connect(), rows)
                except psycopg.errors.DataError:
                    # A value PostgreSQL rejects: store the rest, give up on that record only.
                    rejected = self._store_one_by_one(records)
                    if rejected:
                        raise PermanentSinkError(f"postgresql: {len(rejected)} of {len(records)} records "
                                                 f"rejected: {'; '.join(rejected[:3])}") from None
                return
            except psycopg.Error as exc:
                # Autocommit: a failed statement leaves nothing open; only a broken link is dropped.
                broken = self._conn is not None and self._conn.broken
                if broken:
                    self._drop_connection()
                if not (broken and reused and attempt == 1):
                    raise SinkError(f"postgresql: {exc}") from exc

    def _store(self, conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
        # Straight into the table first: a quarter cheaper for the server than staging.
        # A batch that repeats an id (a replay) fails as a whole and takes the staged way.
        try:
            with conn.cursor() as cur, cur.copy(self._copy_direct) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        except psycopg.errors.UniqueViolation:
            pass
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy(self._copy) as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(self._move)

    def _store_one_by_one(self, records: list[dict[str, Any]]) -> list[str]:
        rejected = []
        for record in records:
            conn = self._connect()
            try:
                self._store(conn, [_row(record)])
            except psycopg.errors.DataError as exc:
                rejected.append(f"{record.get('id')}: {exc}")
        return rejected

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    def close(self) -> None:
        self._drop_connection()


def sink_for(location: Location, http: HttpSinkConfig | None = None) -> PostgresSink:
    """The registry's entry point: ``postgresql://...[?table=NAME]``."""
    return PostgresSink(location)


def _row(record: dict[str, Any]) -> tuple[Any, ...]:
    text = _to_json(record)
    if "\\u0000" in text:  # PostgreSQL text and jsonb cannot hold NUL (a path with %00, say)
        record = _without_nul(record)
        text = _to_json(record)
    return (record["id"], record["ts"], record["type"], record.get("visitor"), record.get("session"), text)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value
