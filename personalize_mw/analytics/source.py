"""Reading touchpoints into DuckDB, and turning them into journeys there.

``open_source`` gives a DuckDB connection with one view, ``touchpoints``, over
any mix of inputs, always with the same columns, so every query after it is
the same SQL whatever the store:

- JSONL files: paths, globs, or a folder (its ``**/*.jsonl``), read by ``read_json``;
  or a sink's ``jsonl:PATH`` (its rotated files too);
- Parquet files (``personalize-mw compact`` writes them): ``.parquet`` paths or globs, or
  ``parquet:PATH`` (a file, glob or folder: its ``**/*.parquet``). Columnar, so every query
  reads only the columns it needs, and nothing is parsed: :func:`read_once` leaves them be;
- SQLite: ``sqlite:PATH[?table=NAME]`` (or a ``.db``/``.sqlite``/``.sqlite3`` path);
- PostgreSQL: ``postgresql://...[?table=NAME]``, the sink's table (``record`` jsonb).

Every URL is the sink's own, parsed by :mod:`personalize_mw.storage.schemes`
(``?table=`` as the sink and the privacy commands read it); each scheme's
reader below is the registry's ``source`` entry for it.

SQLite and PostgreSQL go through DuckDB's scanners when the extensions are
installed; DuckDB downloads those at run time, which an offline machine cannot,
so otherwise the rows are streamed as CSV (``COPY ... TO STDOUT`` for PostgreSQL)
into a DuckDB table. ``build_journeys`` then does the heavy part in SQL (person
merging, sessions, journey cuts, lookback) and fetches only the touches.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from .. import storage
from ..storage import Location
from ..storage import sqlite as sqlite_db
from ..touchpoints.encoding import lines_of
from .days import check_days
from .journeys import Journeys

COLUMNS = {"ts": "TIMESTAMPTZ", "type": "VARCHAR", "visitor": "VARCHAR", "session": "VARCHAR",
           "user": "VARCHAR", "account": "VARCHAR", "path": "VARCHAR", "channel": "VARCHAR",
           "device": "VARCHAR", "country": "VARCHAR", "slot": "VARCHAR",
           "variant": "VARCHAR", "arm": "VARCHAR", "experiment": "VARCHAR", "goal": "VARCHAR",
           "holdout_share": "DOUBLE", "value": "DOUBLE"}  # value last: postgres_relation casts it itself
# The request's own fields, only for ``--by segment`` (:mod:`.segment_cells`), whose utm_* and referrer_host
# conditions read them: never in the view unless asked (``open_source(request=True)``), as each field is one
# more to parse in every JSON line of every readout (docs/performance.md "Lift readout"). ``utm`` is the
# record's object as JSON text, whatever the store.
REQUEST_COLUMNS = {"referrer_host": "VARCHAR", "utm": "VARCHAR"}
# The records' props, only for suggest segments' enriched fields (``open_source(props=True)``): JSON.
PROPS_COLUMNS = {"props": "JSON"}
BY = ("channel", "content", "variant")
UNITS = ("visitor", "account")  # what a journey (and a lift unit) is: a person, or an account's people
_TYPES = "('pageview', 'exposure', 'conversion', 'identify', 'event')"  # what the analytics read
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")  # a bare path with one of these is a sqlite: URL


def _wanted(request: bool, props: bool = False) -> dict[str, str]:
    """The columns a reader gives: the analytics', with the request's fields and props if asked (before
    ``value``)."""
    if not request and not props:
        return COLUMNS
    return {**{c: t for c, t in COLUMNS.items() if c != "value"}, **(REQUEST_COLUMNS if request else {}),
            **(PROPS_COLUMNS if props else {}), "value": COLUMNS["value"]}


def _columns(request: bool = False, props: bool = False) -> str:
    return "{" + ", ".join(f"'{c}': '{t}'" for c, t in _wanted(request, props).items()) + "}"


def _files(spec: str, suffix: str = ".jsonl") -> list[str]:
    """The files a path, glob or folder (its ``**/*<suffix>``) names."""
    path = Path(spec)
    if path.is_dir():
        found = sorted(glob.glob(str(path / "**" / f"*{suffix}"), recursive=True))
    elif any(ch in spec for ch in "*?["):
        found = sorted(glob.glob(spec, recursive=True))
    else:
        found = [spec] if path.exists() else []
    if not found:
        raise FileNotFoundError(f"{spec}: no touchpoint files")
    return found


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _day_after(moment: datetime) -> str:
    """The UTC day after the moment, ``YYYY-MM-DD``: no ``ts`` text up to the moment sorts after it, in
    whatever offset it was written (offsets stay within a day), so it bounds a text column safely."""
    return (moment.astimezone(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")


def jsonl_relation(con: duckdb.DuckDBPyConnection, location: Location, n: int, skip_bad_lines: bool,
                   until: datetime | None = None, request: bool = False,
                   props: bool = False) -> str:
    """``jsonl:PATH``, a sink's URL: every file that sink has written, rotated ones included."""
    from ..touchpoints.jsonl import sink_for

    files = [str(f) for f in sink_for(location).files()]
    if not files:
        raise FileNotFoundError(f"{location.path}: no touchpoint files")
    return _read_json(files, skip_bad_lines, request, props)


def _read_json(files: list[str], skip_bad_lines: bool, request: bool = False, props: bool = False) -> str:
    listed = "[" + ", ".join(_quote(f) for f in files) + "]"
    return (f"read_json({listed}, format = 'newline_delimited', columns = {_columns(request, props)}, "
            f"ignore_errors = {str(skip_bad_lines).lower()})")


def parquet_relation(con: duckdb.DuckDBPyConnection, location: Location, n: int, skip_bad_lines: bool,
                     until: datetime | None = None, request: bool = False,
                     props: bool = False) -> str:
    """``parquet:PATH``: Parquet files, as ``personalize-mw compact`` writes them or any tool does (a
    missing column is NULL, a text ``ts`` is cast)."""
    assert location.path is not None
    return _read_parquet(con, _files(str(location.path), ".parquet"), request, props)


def _read_parquet(con: duckdb.DuckDBPyConnection, files: list[str], request: bool = False,
                  props: bool = False) -> str:
    listed = "[" + ", ".join(_quote(f) for f in files) + "]"
    reader = f"read_parquet({listed}, union_by_name = true)"
    types = {row[0]: str(row[1]) for row in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()}
    have = set(types)
    if request:
        _lacks_request(con, have)
    # a COPY of the raw lines holds utm as a STRUCT, whose text is not JSON: as JSON text, like every store's
    picks = ", ".join(f'CAST(to_json("{c}") AS {t}) AS "{c}"' if types.get(c, "").startswith(("STRUCT", "MAP"))
                      else f'CAST("{c}" AS {t}) AS "{c}"' if c in have else f'NULL::{t} AS "{c}"'
                      for c, t in _wanted(request, props).items())
    return f"(SELECT {picks} FROM {reader})"


def _lacks_request(con: duckdb.DuckDBPyConnection, have: set[str]) -> None:
    """Note in the connection that an input has no request fields at all (``compact``'s Parquet keeps only
    the analytics' columns), so their NULLs are unknown, not "no utm": see :func:`request_fields`."""
    if not set(REQUEST_COLUMNS) <= have:
        con.execute("SET VARIABLE pmw_request_missing = true")


def request_fields(con: duckdb.DuckDBPyConnection) -> bool | None:
    """Whether the ``touchpoints`` view has the request's fields (:data:`REQUEST_COLUMNS`) of every record:
    None when not asked for (``open_source(request=False)``), False when an input does not carry them."""
    row = con.execute("SELECT getvariable('pmw_request_missing')").fetchone()
    return None if row is None or row[0] is None else not row[0]


def sqlite_relation(con: duckdb.DuckDBPyConnection, location: Location, n: int, skip_bad_lines: bool,
                    until: datetime | None = None, request: bool = False,
                    props: bool = False) -> str:
    """``sqlite:PATH[?table=NAME]``: the sink's table, read-only. With ``until``, its rows after the day
    after it stay in SQLite (``ts`` is ISO text there, compared as text by its date); the
    ``touchpoints`` view makes the exact cut."""
    assert location.path is not None
    path, table = str(location.path), location.table[0]
    if not location.path.exists():
        raise FileNotFoundError(f"{path}: no such SQLite file")
    src = sqlite_db.connect_readonly(location.path)
    try:
        have = {row[1] for row in src.execute(f'PRAGMA table_info("{table}")')}
        if not have:
            raise ValueError(f"{path}: no table {table!r}")
        if request:
            _lacks_request(con, have)
        wanted = _wanted(request, props)
        picks = ", ".join(f'"{c}"' if c in have else f'NULL AS "{c}"' for c in wanted)
        moment = "" if until is None else f" AND substr(ts, 1, 10) <= {_quote(_day_after(until))}"
        query = f'SELECT {picks} FROM "{table}" WHERE type IN {_TYPES}{moment}'
        try:
            con.execute("LOAD sqlite")  # only if installed already: never a download
            typed = ", ".join(f'CAST({chr(34) + c + chr(34) if c in have else "NULL"} AS {t}) AS "{c}"'
                              for c, t in wanted.items())  # SQLite stores ts as text; old files lack columns
            return (f"(SELECT {typed} FROM sqlite_scan({_quote(path)}, {_quote(table)}) "
                    f"WHERE type IN {_TYPES}{moment})")
        except duckdb.Error:
            pass
        # As JSON lines rather than CSV: NULL and "" stay apart, and any text survives.
        names = list(wanted)
        with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as out:
            cursor = src.execute(query)
            while rows := cursor.fetchmany(50_000):
                lines = [dict(zip(names, row, strict=True)) for row in rows]
                if props:  # JSON text in SQLite: the object itself in the line
                    for line in lines:
                        line["props"] = json.loads(line["props"]) if line["props"] else None
                out.write(lines_of(lines))
        return _load(con, out.name, n, "read_json", "format = 'newline_delimited'", request, props)
    finally:
        src.close()


def postgres_relation(con: duckdb.DuckDBPyConnection, location: Location, n: int, skip_bad_lines: bool,
                      until: datetime | None = None, request: bool = False,
                      props: bool = False) -> str:
    """``postgresql://...[?table=NAME]``: the sink's table (``record`` jsonb), streamed as CSV; with
    ``until``, only its rows to then."""
    import psycopg
    from psycopg import sql

    table = sql.Identifier(*location.table)
    fields = sql.SQL(", ").join(
        [sql.SQL("ts"), sql.SQL("type"), sql.SQL("visitor"), sql.SQL("session")]
        + [sql.SQL("record->>{}").format(sql.Literal(c)) for c in list(_wanted(request, props))[4:-1]]
        + [sql.SQL("(record->>'value')::float8")])
    moment = sql.SQL("") if until is None else sql.SQL(" AND ts <= {}::timestamptz").format(
        sql.Literal(until.isoformat()))
    query = sql.SQL("COPY (SELECT {} FROM {} WHERE type IN " + _TYPES + "{}) TO STDOUT (FORMAT csv)").format(
        fields, table, moment)
    try:
        with psycopg.connect(location.address, connect_timeout=10,
                             application_name="personalize_mw analytics") as pg:
            pg.execute("SET TIME ZONE 'UTC'")
            with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as out:
                with pg.cursor().copy(query) as copy:
                    for chunk in copy:
                        out.write(chunk)
    except psycopg.Error as exc:  # an OSError, which every command reports as a message, not a traceback
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OSError(f"PostgreSQL table {'.'.join(location.table)}: {reason}") from exc
    # PostgreSQL's CSV: NULL is an empty field, "" an empty string, quotes doubled.
    return _load(con, out.name, n, "read_csv", "header = false, auto_detect = false, delim = ',', quote = '\"', "
                 "escape = '\"', allow_quoted_nulls = false", request, props)


def _load(con: duckdb.DuckDBPyConnection, path: str, n: int, reader: str, options: str,
          request: bool = False, props: bool = False) -> str:
    """Copy a temporary file into a DuckDB table (which spills to disk as needed), then remove it."""
    try:
        con.execute(f"CREATE TEMP TABLE pmw_src{n} AS SELECT * FROM {reader}({_quote(path)}, {options}, "
                    f"columns = {_columns(request, props)})")
    finally:
        os.unlink(path)
    return f"pmw_src{n}"


def _url(spec: str) -> str:
    """A bare path as the URL its suffix implies (``x.db``: ``sqlite:x.db``; ``x.parquet``:
    ``parquet:x.parquet``); anything else as given."""
    if storage.scheme_of(spec) is not None:
        return spec
    bare = spec.split("?")[0].lower()
    if bare.endswith(_SQLITE_SUFFIXES):
        return "sqlite:" + spec
    return "parquet:" + spec if bare.endswith(".parquet") else spec


def open_source(inputs: Sequence[str], con: duckdb.DuckDBPyConnection | None = None,
                skip_bad_lines: bool = False, until: datetime | None = None,
                unit: str = "visitor", request: bool = False, props: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose view ``touchpoints`` unites every input.

    A JSONL line that is not JSON (a line torn by a crash mid-write) fails the
    query, naming the file and line, unless ``skip_bad_lines``. With ``until``
    (timezone-aware), the view holds only the records at or before it: every
    readout over it is the readout as of that moment. ``unit="account"``: the
    ``visitor`` of every record is its account (see :func:`_account_units`), so
    every readout after it counts accounts. ``request``: the view also has the records'
    :data:`REQUEST_COLUMNS` (:func:`request_fields` says whether every input carried them). ``props``: the
    records' ``props`` too (JSON), for suggest segments' enriched fields; no other readout parses them.
    """
    if not inputs:
        raise ValueError("no input given")
    if unit not in UNITS:
        raise ValueError(f"--unit must be one of {', '.join(UNITS)}")
    if con is None:
        con = duckdb.connect()
        # Spill beyond memory into the system's temp folder, not a .tmp in the current directory.
        spill = Path(tempfile.gettempdir()) / f"personalize_mw-duckdb-{os.getpid()}"
        con.execute(f"SET temp_directory = {_quote(str(spill))}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # it would land in the command's JSON or CSV output
    con.execute(f"SET VARIABLE pmw_request_missing = {'false' if request else 'NULL'}")
    wanted = _wanted(request, props)
    select = ", ".join(f'"{c}"' for c in wanted)
    parts: list[str] = []
    files: list[str] = []
    urls = [_url(spec) for spec in inputs]
    for n, spec in enumerate(urls):
        if storage.scheme_of(spec) is None:
            files.extend(_files(spec))  # a path, a glob or a folder
            continue
        location = storage.locate(spec, "source")
        relation = storage.handler(location)(con, location, n, skip_bad_lines, until, request=request, props=props)
        parts.append(f"SELECT {select} FROM {relation}")
    if files:
        parts.append(f"SELECT {select} FROM {_read_json(files, skip_bad_lines, request, props)}")
    # Only Parquet: every query reads its own columns faster than a copy of all of them (read_once).
    columnar = all(spec.startswith("parquet:") for spec in urls)
    con.execute(f"SET VARIABLE pmw_columnar = {str(columnar).lower()}")
    con.execute("CREATE OR REPLACE TEMP VIEW pmw_all AS " + " UNION ALL ".join(parts))
    # pmw_base: every record, its visitor already the unit's (what as_of cuts at a moment).
    if unit == "account":
        _account_units(con, until)
        picks = ", ".join('coalesce(u.unit, t."visitor") AS "visitor"' if c == "visitor" else f't."{c}"'
                          for c in wanted)
        con.execute(f"CREATE OR REPLACE TEMP VIEW pmw_base AS SELECT {picks} FROM pmw_all t "
                    "LEFT JOIN pmw_unit u USING (visitor)")
    else:
        con.execute("CREATE OR REPLACE TEMP VIEW pmw_base AS SELECT * FROM pmw_all")
    as_of(con, until)
    return con


def _until(until: datetime | None) -> str:
    """The SQL condition of a readout's moment, ``ts <= ...``; empty for all records."""
    if until is None:
        return ""
    if until.utcoffset() is None:
        raise ValueError("until must carry a time zone")
    return f"ts <= TIMESTAMPTZ {_quote(until.isoformat())}"


def as_of(con: duckdb.DuckDBPyConnection, until: datetime | None, base: str = "pmw_base") -> None:
    """Point the ``touchpoints`` view at ``base``'s records up to ``until`` inclusive (all of them: None).

    The one place a readout's moment is applied, whatever the store: every
    query of the analytics reads ``touchpoints``.
    """
    condition = _until(until)
    where = f" WHERE {condition}" if condition else ""
    con.execute(f"CREATE OR REPLACE TEMP VIEW touchpoints AS SELECT * FROM {base}{where}")


def _account_units(con: duckdb.DuckDBPyConnection, until: datetime | None) -> None:
    """pmw_unit(visitor, unit): each visitor id of an account as ``a:<account>``.

    A visitor belongs to the account its identify records (up to ``until``) name,
    or that the identify records of another device of the same person (linked
    through a shared user id) name: all the people and devices of the account
    become one unit. A visitor never linked to an account keeps its own id (and
    its person, merged later through identify as usual); one linked to several
    accounts counts under the smallest of their ids.
    """
    condition = _until(until)
    con.execute('CREATE OR REPLACE TEMP TABLE pmw_rec AS SELECT type, visitor, "user", account FROM pmw_all '
                "WHERE type = 'identify' AND visitor IS NOT NULL" + (f" AND {condition}" if condition else ""))
    _merge_people(con)
    con.execute("""CREATE OR REPLACE TEMP TABLE pmw_unit AS
        WITH own AS (SELECT visitor, min(account) AS account FROM pmw_rec WHERE account IS NOT NULL GROUP BY visitor),
             per_person AS (SELECT p.person, min(o.account) AS account FROM own o JOIN pmw_person p USING (visitor)
                            GROUP BY p.person)
        SELECT v.visitor, 'a:' || coalesce(o.account, pp.account) AS unit
        FROM (SELECT DISTINCT visitor FROM pmw_rec) v LEFT JOIN own o USING (visitor)
             LEFT JOIN pmw_person p USING (visitor) LEFT JOIN per_person pp USING (person)
        WHERE coalesce(o.account, pp.account) IS NOT NULL""")
    for table in ("pmw_links", "pmw_person", "pmw_user", "pmw_next", "pmw_rec"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _merge_people(con: duckdb.DuckDBPyConnection) -> None:
    """pmw_person(visitor, person): visitors joined through shared user ids (connected components)."""
    con.execute('CREATE OR REPLACE TEMP TABLE pmw_links AS SELECT DISTINCT visitor, "user" FROM pmw_rec '
                "WHERE type = 'identify' AND \"user\" IS NOT NULL")
    con.execute('CREATE OR REPLACE TEMP TABLE pmw_person AS SELECT visitor, min("user") AS person '
                "FROM pmw_links GROUP BY visitor")
    # Propagate the smallest user id over visitor-user links until nothing changes (graph diameter steps).
    while True:
        con.execute('CREATE OR REPLACE TEMP TABLE pmw_user AS SELECT l."user", min(p.person) AS person '
                    'FROM pmw_links l JOIN pmw_person p USING (visitor) GROUP BY l."user"')
        con.execute("CREATE OR REPLACE TEMP TABLE pmw_next AS SELECT l.visitor, min(u.person) AS person "
                    'FROM pmw_links l JOIN pmw_user u USING ("user") GROUP BY l.visitor')
        changed = con.execute("SELECT count(*) FROM pmw_next n JOIN pmw_person p USING (visitor) "
                              "WHERE n.person <> p.person").fetchone()
        con.execute("CREATE OR REPLACE TEMP TABLE pmw_person AS SELECT * FROM pmw_next")
        if not changed or changed[0] == 0:
            break


# Per --by: which records are touches, and the touch's name.
_TOUCH = {
    # the channel of each session's first record (a session keeps its channel; see _touch_sql)
    "channel": ("type IN ('pageview', 'exposure', 'conversion', 'event') AND session IS NOT NULL",
                "coalesce(channel, '(none)')"),
    "content": ("type = 'pageview'", "coalesce(path, '(none)')"),
    # what the visitor saw: holdout and unenrolled exposures showed the default
    "variant": ("type = 'exposure' AND slot IS NOT NULL AND coalesce(arm, 'treatment') = 'treatment'",
                "slot || ':' || coalesce(variant, '')"),
}


def _touch_sql(by: str) -> str:
    if by == "channel":
        return ("SELECT person, min(ts) AS ts, arg_min(touch, ts) AS touch FROM tp "
                "WHERE touch IS NOT NULL GROUP BY person, session")
    return "SELECT person, ts, touch FROM tp WHERE touch IS NOT NULL"


def build_journeys(con: duckdb.DuckDBPyConnection, by: str = "channel", goal: str | None = None,
                   lookback_days: float = 30.0) -> Journeys:
    """Journeys from the ``touchpoints`` view (see :mod:`.journeys`).

    Per person (visitor ids merged through identify records; a conversion
    with a user id and no visitor id, as imported, joins its user's person),
    records in time order; each conversion closes a journey, the touches after it start the
    next. Touches more than ``lookback_days`` before the conversion (before
    the last touch, for a journey that did not convert) are left out. At equal
    times a touch comes before the conversion, so the goal page's own
    pageview is part of its journey.
    """
    check_days(lookback_days, "lookback_days")
    if by not in _TOUCH:
        raise ValueError(f"--by must be one of {', '.join(BY)}")
    is_touch, name = _TOUCH[by]
    # One scan of the input, keeping only the rows and columns the journeys need.
    con.execute(f"""CREATE OR REPLACE TEMP TABLE pmw_rec AS
        SELECT ts, type, visitor, session, "user", goal, value, CASE WHEN {is_touch} THEN {name} END AS touch
        FROM touchpoints WHERE (visitor IS NOT NULL OR (type = 'conversion' AND "user" IS NOT NULL))
                               AND (type IN ('identify', 'conversion') OR ({is_touch}))""")
    _merge_people(con)
    # A conversion with a user and no visitor (imported from a CRM) belongs to that user's person.
    con.execute("""CREATE OR REPLACE TEMP VIEW tp AS SELECT t.*,
        CASE WHEN t.visitor IS NULL THEN 'u:' || coalesce(u.person, t."user")
             ELSE coalesce('u:' || p.person, 'v:' || t.visitor) END AS person
        FROM pmw_rec t LEFT JOIN pmw_person p USING (visitor)
        LEFT JOIN pmw_user u ON t.visitor IS NULL AND u."user" = t."user"
        """)
    goal_filter = "AND goal = $goal" if goal is not None else ""
    params: dict[str, Any] = {"goal": goal} if goal is not None else {}
    con.execute(f"""CREATE OR REPLACE TEMP TABLE pmw_ev AS
        SELECT person, ts, kind, touch, value,
               coalesce(sum(kind) OVER (PARTITION BY person ORDER BY ts, kind, touch
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS jn
        FROM (SELECT person, ts, 0 AS kind, touch, 0.0 AS value FROM ({_touch_sql(by)})
              UNION ALL
              SELECT person, ts, 1, NULL, coalesce(value, 0.0) FROM tp WHERE type = 'conversion' {goal_filter})""",
                params)
    con.execute("""CREATE OR REPLACE TEMP TABLE pmw_j AS
        SELECT person, jn, bool_or(kind = 1) AS converted, coalesce(sum(value) FILTER (kind = 1), 0.0) AS value,
               epoch(coalesce(max(ts) FILTER (kind = 1), max(ts))) AS end_s,
               row_number() OVER (ORDER BY person, jn) - 1 AS jid
        FROM pmw_ev GROUP BY person, jn""")
    con.execute("""CREATE OR REPLACE TEMP TABLE pmw_dict AS
        SELECT touch, (row_number() OVER (ORDER BY touch) - 1)::INTEGER AS code
        FROM (SELECT DISTINCT touch FROM pmw_ev WHERE kind = 0)""")
    labels = [row[0] for row in con.execute("SELECT touch FROM pmw_dict ORDER BY code").fetchall()]
    touches = con.execute("""
        SELECT j.jid, d.code, (j.end_s - epoch(e.ts)) / 3600.0 AS hours
        FROM pmw_ev e JOIN pmw_j j USING (person, jn) JOIN pmw_dict d USING (touch)
        WHERE e.kind = 0 AND j.end_s - epoch(e.ts) <= $lookback * 86400.0
        ORDER BY j.jid, e.ts, d.code""", {"lookback": float(lookback_days)}).fetchnumpy()
    journeys = con.execute("SELECT converted, value FROM pmw_j ORDER BY jid").fetchnumpy()
    con.execute("DROP VIEW IF EXISTS tp")
    for table in ("pmw_ev", "pmw_j", "pmw_dict", "pmw_links", "pmw_person", "pmw_user", "pmw_next",
                  "pmw_rec"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    count = len(journeys["converted"])
    offsets = np.zeros(count + 1, dtype=np.int64)
    jid = np.asarray(touches["jid"], dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(jid, minlength=count))
    converted = np.asarray(journeys["converted"], dtype=bool)
    return Journeys(labels, np.asarray(touches["code"], dtype=np.int32), offsets,
                    np.asarray(touches["hours"], dtype=np.float64), converted,
                    np.where(converted, np.asarray(journeys["value"], dtype=np.float64), 0.0))


def read_once(con: Any) -> Any:
    """The ``touchpoints`` view copied into a table, the view then reading that.

    The lift query and the attribution beside it (and the report's sections) each
    read every record, and over JSON lines each read is a full parse (bench/lift.py).
    Over Parquet alone (:func:`open_source` says so) the view stays as it is.
    """
    if con.execute("SELECT getvariable('pmw_columnar')").fetchone()[0]:
        return con
    con.execute("CREATE TEMP TABLE pmw_readout AS SELECT * FROM touchpoints")
    con.execute("CREATE OR REPLACE TEMP VIEW touchpoints AS SELECT * FROM pmw_readout")
    return con
