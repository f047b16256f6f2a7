"""The storage scheme registry: one parse of each URL, the same ``?table=`` in every role.

The end-to-end tests write through the real pipeline into a table of the
site's naming, then find the records there with the privacy commands and read
them with the analytics, for SQLite and for a real PostgreSQL server.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from personalize_mw import storage
from personalize_mw.analytics import open_source
from personalize_mw.config import load_config
from personalize_mw.privacy import export_person, forget_person, prune_records
from personalize_mw.state import open_store
from personalize_mw.touchpoints.queue import TouchpointPipeline
from personalize_mw.touchpoints.record import new_record
from servers import PostgresServer, postgres, pg  # noqa: F401  (fixtures)

SECRET = "storage-test-secret-0123456789abcdef"
CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
UTM = dict.fromkeys(("source", "medium", "campaign", "term", "content"))
TOUCHPOINT_ROLES = ("sink", "privacy", "source")


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("role", TOUCHPOINT_ROLES)
def test_table_means_the_same_in_every_role(role: str, tmp_path: Path) -> None:
    lite = storage.locate("sqlite:tp.db?table=site_events", role, lambda p: tmp_path / p)
    assert (lite.path, lite.table) == (tmp_path / "tp.db", ("site_events",))
    assert storage.locate("sqlite:tp.db", role).table == ("touchpoints",)
    pg_url = storage.locate("postgresql://u:pw@db:5432/x?sslmode=require&table=analytics.events", role)
    assert pg_url.table == ("analytics", "events")
    assert pg_url.address == "postgresql://u:pw@db:5432/x?sslmode=require"  # libpq never sees table=
    assert storage.locate("postgres://db/x", role).table == ("touchpoints",)
    for bad in ("sqlite:tp.db?table=", "sqlite:tp.db?table=a.b", "sqlite:tp.db?table=x;drop",
                "postgresql://db/x?table=", "postgresql://db/x?table=a.b.c", "postgresql://db/x?table=1x"):
        with pytest.raises(ValueError, match="table"):
            storage.locate(bad, role)


def test_sqlite_state_names_its_counters_table(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    assert storage.locate(f"sqlite:{db}", "state").table == ("pmw_counters",)
    store = open_store(f"sqlite:{db}?table=counters_site&timeout_ms=2000", flush_interval_s=0.05)
    try:
        store.add("page:/a", "/b", 2)
        assert store.flush()
        assert store.backend.read("page:/a") == {"/b": 2.0}
    finally:
        store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT key, field, value FROM counters_site").fetchall() == [("page:/a", "/b", 2.0)]
    conn.close()


@pytest.mark.parametrize("url, role, problem", [
    ("kafka:topic", "sink", "unknown sink"),
    ("jsonl:", "sink", "unknown sink"),
    ("memory", "sink", "unknown sink"),  # a state backend, not a sink
    ("https://h/v1/batch", "source", "unknown source"),  # forwarded, nothing to read back
    ("redis://h/0", "privacy", "unknown privacy"),
    ("mysql://x", "state", "unknown state"),
    ("jsonl:a.jsonl?keep=3", "sink", "unknown jsonl option"),
    ("jsonl:a.jsonl?rotate=daily&max_bytes=1M", "privacy", "choose one"),
    ("sqlite:a.db?timeout_ms=5", "sink", "unknown sqlite option"),  # the state's option only
    ("sqlite:a.db?timeout_ms=soon", "state", "timeout_ms"),
    ("memory?timeout_ms=0", "state", "timeout_ms"),
    ("redis://h/s?maxlen=ten", "sink", "maxlen"),
    ("python:module_without_name", "sink", "python:package.module:name"),
])
def test_what_is_wrong_with_a_url_is_said(url: str, role: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        storage.check(url, role)


def test_a_password_never_appears_in_a_message() -> None:
    with pytest.raises(ValueError) as raised:
        storage.check("postgresql://app:s3cret@db/x?table=bad-name", "sink")
    assert "s3cret" not in str(raised.value) and "app:***@db" in str(raised.value)
    assert storage.label("https://wk_123:@api.segment.io/v1/batch") == "https://***@api.segment.io/v1/batch"


def test_checking_a_url_touches_nothing(tmp_path: Path) -> None:
    for role in ("sink", "privacy", "source"):
        storage.check(f"sqlite:{tmp_path / 'new' / 'tp.db'}", role)
    storage.check(f"sqlite:{tmp_path / 'new' / 'state.db'}", "state")
    assert not (tmp_path / "new").exists()


def test_every_handler_of_the_registry_exists() -> None:
    for scheme in storage.REGISTRY:
        assert set(scheme.roles) <= set(storage.ROLES), scheme.name
        for role in scheme.roles:
            location = storage.Location(url=scheme.example, scheme=scheme.name, role=role)
            assert callable(storage.handler(location)), (scheme.name, role)


def test_drivers_are_imported_only_when_their_scheme_is_opened(tmp_path: Path) -> None:
    # A fresh interpreter: this one has imported everything already.
    program = f"""
import sys
from personalize_mw.config import load_config
from personalize_mw.touchpoints.sink import open_sink
config = load_config({{"secret_keys": ["{SECRET}"], "state": "redis://127.0.0.1:1/0",
                       "sink": ["jsonl:{tmp_path}/tp.jsonl", "postgresql://u@127.0.0.1:1/x?table=t",
                                "redis://127.0.0.1:1/0/s", "sqlite:{tmp_path}/tp.db?table=t"]}})
open_sink(config.sinks[0], config.resolve).close()
print(sorted(m for m in ("psycopg", "redis", "duckdb", "numpy", "sqlite3") if m in sys.modules))
open_sink(config.sinks[1], config.resolve).close()
print(sorted(m for m in ("psycopg", "redis") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "['psycopg']"]


# ---------------------------------------------------------------- a custom table, end to end


def visit(visitor: str, path: str, t: float, **fields: Any) -> dict[str, Any]:
    return new_record(fields.pop("kind", "pageview"), t, visitor=visitor, session=f"s-{visitor}", path=path,
                      referrer_host=None, channel="email", utm=dict(UTM), consent=CONSENT, **fields)


def deliver(url: str, tmp_path: Path) -> None:
    """Alice on two devices (one identify each), Bob on one, through the real pipeline into ``url``."""
    config = load_config({"secret_keys": [SECRET], "sink": url,
                          "delivery": {"flush_interval_s": 0.05, "spool_dir": str(tmp_path / "spool")}})
    pipeline = TouchpointPipeline.from_config(config)
    now = time.time()
    for record in [visit("dev-A", "/a", now - 30), visit("dev-A", "/", now - 29, kind="identify", user="alice"),
                   visit("dev-B", "/b", now - 20), visit("dev-B", "/", now - 19, kind="identify", user="alice"),
                   visit("dev-B", "/buy", now - 10, kind="conversion", goal="signup", value=10),
                   visit("dev-C", "/c", now - 5)]:
        assert pipeline.put(record)
    assert pipeline.flush(10)
    pipeline.close()


def analysed(url: str) -> list[tuple[str, str]]:
    con = open_source([url])
    return [(v, p) for v, p in con.execute("SELECT visitor, path FROM touchpoints ORDER BY ts").fetchall()]


def round_trip(url: str, tmp_path: Path) -> None:
    deliver(url, tmp_path)
    assert analysed(url) == [("dev-A", "/a"), ("dev-A", "/"), ("dev-B", "/b"), ("dev-B", "/"),
                             ("dev-B", "/buy"), ("dev-C", "/c")]
    config = load_config({"secret_keys": [SECRET], "sink": url,
                          "delivery": {"spool_dir": str(tmp_path / "spool")}})
    label = storage.label(url)
    exported = export_person(config, "dev-A")  # dev-B through alice's identify records
    assert exported["unreadable"] == {}
    assert sorted(r["path"] for r in exported["records"][label]) == ["/", "/", "/a", "/b", "/buy"]
    report = forget_person(config, "alice")
    assert report.complete and report.deleted[label] == 5
    assert analysed(url) == [("dev-C", "/c")]
    assert prune_records(config, days=0, now=time.time() + 60)[label] == 1


def test_a_custom_sqlite_table_end_to_end(tmp_path: Path) -> None:
    db = tmp_path / "site.db"
    round_trip(f"sqlite:{db}?table=site_events", tmp_path)
    conn = sqlite3.connect(db)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert tables == {"site_events"}  # nothing went to, or was looked for in, a "touchpoints" table


@pytest.fixture
def pg_schema(pg: PostgresServer) -> Iterator[str]:
    schema = f"site_{uuid.uuid4().hex[:8]}"
    pg.query(f"CREATE SCHEMA {schema}")
    yield schema
    pg.query(f"DROP SCHEMA {schema} CASCADE")


def test_a_custom_postgresql_table_end_to_end(pg: PostgresServer, pg_schema: str, tmp_path: Path) -> None:
    round_trip(f"{pg.url}?table={pg_schema}.events", tmp_path)
    assert pg.query("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    pg_schema) == [("events",)]


def test_analytics_reads_a_jsonl_sink_url_with_its_rotated_files(tmp_path: Path) -> None:
    url = f"jsonl:{tmp_path / 'tp.jsonl'}?max_bytes=2K"
    deliver(url, tmp_path)
    deliver(url, tmp_path)
    assert len(list(tmp_path.glob("tp.*Z.jsonl"))) >= 2  # rotated aside, past 2 KiB each
    assert len(analysed(url)) == 12
    current = len((tmp_path / "tp.jsonl").read_text().splitlines())
    assert len(analysed(str(tmp_path / "tp.jsonl"))) == current < 12  # a bare path is that one file


def test_a_line_another_writer_escaped_is_still_forgotten(tmp_path: Path) -> None:
    sink = tmp_path / "tp.jsonl"
    # msgspec refuses an escaped lone surrogate; the standard library wrote it (ensure_ascii).
    sink.write_text('{"id":"1","ts":"2026-01-01T00:00:00.000Z","type":"pageview","visitor":"dev-A",'
                    '"path":"/\\ud800"}\n{"id":"2","ts":"2026-01-01T00:00:00.000Z","type":"pageview",'
                    '"visitor":"dev-C","path":"/"}\n')
    config = load_config({"secret_keys": [SECRET], "sink": f"jsonl:{sink}",
                          "delivery": {"spool_dir": str(tmp_path / "spool")}})
    assert forget_person(config, "dev-A").deleted[storage.label(f"jsonl:{sink}")] == 1
    assert '"dev-C"' in sink.read_text() and '"dev-A"' not in sink.read_text()


def _open_when_released(path: str, barrier: Any) -> None:
    from personalize_mw.storage.sqlite import connect

    barrier.wait()
    connect(Path(path), 5.0).close()


def test_workers_opening_a_new_sqlite_file_at_once_all_get_it(tmp_path: Path) -> None:
    """Switching a new file to WAL needs an exclusive lock that SQLite refuses at once ("database is
    locked") rather than waiting: workers of one server starting together failed now and then."""
    import multiprocessing

    context = multiprocessing.get_context("fork")  # quick to start; the connections open after the fork
    failed = 0
    for round_ in range(60):
        barrier = context.Barrier(4)
        workers = [context.Process(target=_open_when_released, args=(str(tmp_path / f"{round_}.db"), barrier))
                   for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        failed += sum(worker.exitcode != 0 for worker in workers)
    assert failed == 0
