"""The network sinks against real servers: PostgreSQL, Redis and an HTTP collector on loopback.

Each test writes batches the way the queue worker does (finalized records,
the same batch again on a retry) and reads back what the server holds.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from personalize_mw.config import load_config
from personalize_mw.errors import ConfigError
from personalize_mw.touchpoints.http import HttpSink, to_message
from personalize_mw.storage import locate
from personalize_mw.touchpoints.postgresql import PostgresSink
from personalize_mw.touchpoints.python_sink import load_python_sink
from personalize_mw.touchpoints.queue import TouchpointPipeline
from personalize_mw.touchpoints.record import finalize, new_record
from personalize_mw.touchpoints.redis_stream import RedisStreamSink
from personalize_mw.touchpoints.sink import PermanentSinkError, SinkError, open_sink, sink_label
from servers import (  # noqa: F401  (fixtures)
    CollectorServer, PostgresServer, RedisServer, collector, collector_session, pg, postgres,
    redis_server, redis_session,
)

CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
NO_UTM = {"source": None, "medium": None, "campaign": None, "term": None, "content": None}


def record(kind: str = "pageview", path: str = "/", visitor: str | None = "v1", **extra: Any) -> dict[str, Any]:
    return finalize(new_record(kind, time.time(), visitor=visitor, session="s1" if visitor else None,
                               path=path, referrer_host=None, channel="direct", utm=dict(NO_UTM),
                               consent=CONSENT, **extra))


def batch(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [record(path=f"/p{i}", **kw) for i in range(n)]


def unique_table() -> str:
    return f"tp_{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- open_sink


def test_open_sink_knows_each_network_scheme(sink_module: str) -> None:
    def nowhere(path: str) -> Path:
        raise AssertionError("network sinks resolve no path")

    for url, kind in [("postgresql://u@h/db?table=t", PostgresSink), ("postgres://h/db", PostgresSink),
                      ("redis://h:6379/0/s", RedisStreamSink), ("rediss://h/s", RedisStreamSink),
                      ("http://h/v1/batch", HttpSink), ("https://k:@h/v1/batch", HttpSink)]:
        sink = open_sink(url, nowhere)  # nothing connects before the first write
        assert isinstance(sink, kind), url
        sink.close()
    sink = open_sink(f"python:{sink_module}:collect", nowhere)
    sink.write(batch(1))
    assert len(sys.modules[sink_module].received) == 1


# ---------------------------------------------------------------- PostgreSQL


def test_pg_records_land_in_a_table_created_with_its_indexes(pg: PostgresServer) -> None:
    table = unique_table()
    sink = PostgresSink(f"{pg.url}?table={table}")
    records = batch(3) + [record("exposure", slot="hero", variant="welcome")]
    sink.write(records)
    sink.close()
    rows = pg.query(f"SELECT id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
                    f"type, visitor, session, record FROM {table} ORDER BY record->>'path'")
    by_id = {r["id"]: r for r in records}
    assert len(rows) == 4
    for id_, ts, kind, visitor, session, stored in rows:
        original = by_id[id_]
        assert (ts, kind, visitor, session) == (original["ts"], original["type"], original["visitor"],
                                                original["session"])
        assert stored == original
    indexed = {row[0] for row in pg.query(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass", table)}
    assert indexed == {"id", "visitor", "ts", "type"}
    primary = pg.query("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                       "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary", table)
    assert primary == [("id",)]


def test_pg_a_replayed_batch_stores_nothing_twice(pg: PostgresServer) -> None:
    table = unique_table()
    sink = PostgresSink(f"{pg.url}?table={table}")
    first, second = batch(50), batch(50)
    sink.write(first)
    sink.write(first)  # the acknowledgement was lost: the queue sends it again
    sink.write(first[25:] + second + second[:5])  # overlapping, and a duplicate inside one batch
    sink.close()
    ids = [row[0] for row in pg.query(f"SELECT id FROM {table}")]
    assert sorted(ids) == sorted(r["id"] for r in first + second)


def test_pg_a_second_sink_on_an_existing_table(pg: PostgresServer) -> None:
    table = unique_table()
    one, two = PostgresSink(f"{pg.url}?table={table}"), PostgresSink(f"{pg.url}?table={table}")
    one.write(batch(2))
    two.write(batch(3))
    assert pg.query(f"SELECT count(*) FROM {table}") == [(5,)]
    one.close()
    two.close()


def test_pg_a_role_with_insert_alone_writes_to_an_existing_table(pg: PostgresServer) -> None:
    table, role = unique_table(), f"writer_{uuid.uuid4().hex[:8]}"
    PostgresSink(f"{pg.url}?table={table}").write(batch(1))  # the owner created it
    pg.query(f"CREATE ROLE {role} LOGIN")
    pg.query(f"GRANT INSERT, SELECT ON {table} TO {role}")
    as_writer = pg.url.replace("postgres@", f"{role}@", 1)
    sink = PostgresSink(f"{as_writer}?table={table}")
    sink.write(batch(2))
    with pytest.raises(SinkError, match="permission denied"):  # it may not create one
        PostgresSink(f"{as_writer}?table={unique_table()}").write(batch(1))
    sink.close()
    assert pg.query(f"SELECT count(*) FROM {table}") == [(3,)]


def test_pg_table_in_a_schema_and_other_url_parameters_pass_through(pg: PostgresServer) -> None:
    pg.query("CREATE SCHEMA IF NOT EXISTS analytics")
    sink = PostgresSink(f"{pg.url}?table=analytics.touch&application_name=x&connect_timeout=3")
    sink.write(batch(2))
    sink.close()
    assert pg.query("SELECT count(*) FROM analytics.touch") == [(2,)]


@pytest.mark.parametrize("table", ["1abc", "tp;drop table x", "a.b.c", "", "x" * 64, "tp-1"])
def test_pg_table_names_are_identifiers(table: str) -> None:
    with pytest.raises(ValueError, match="table"):
        PostgresSink(f"postgresql://h/db?table={table}")


def test_pg_url_without_table_uses_the_default() -> None:
    sink = PostgresSink("postgresql://u:p@h:5/db?sslmode=require&table=t2")
    assert (sink.conninfo, sink.names) == ("postgresql://u:p@h:5/db?sslmode=require", ("t2",))
    assert PostgresSink("postgresql://h/db").names == ("touchpoints",)


def test_pg_a_nul_character_is_replaced_not_refused(pg: PostgresServer) -> None:
    table = unique_table()
    sink = PostgresSink(f"{pg.url}?table={table}")
    r = record(path="/a\x00b")
    sink.write([r])
    sink.close()
    assert pg.query(f"SELECT record->>'path' FROM {table}") == [("/a\ufffdb",)]
    assert r["path"] == "/a\x00b"  # the queue's copy is untouched


def test_pg_one_record_postgres_rejects_does_not_take_the_batch_with_it(pg: PostgresServer) -> None:
    table = unique_table()
    sink = PostgresSink(f"{pg.url}?table={table}")
    good = batch(4)
    bad = record()
    bad["ts"] = "not a time"
    with pytest.raises(PermanentSinkError, match=bad["id"]):
        sink.write(good[:2] + [bad] + good[2:])
    sink.write(batch(1))  # the connection is still usable
    sink.close()
    stored = {row[0] for row in pg.query(f"SELECT id FROM {table}")}
    assert {r["id"] for r in good} <= stored and bad["id"] not in stored and len(stored) == 5


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_pg_reconnects_after_a_server_restart(pg: PostgresServer, mode: str) -> None:
    table = unique_table()
    sink = PostgresSink(f"{pg.url}?table={table}")
    before = batch(10)
    sink.write(before)
    pg.restart(mode)
    after = batch(10)
    sink.write(after)  # the stale connection fails once inside write; a new one is opened
    pg.stop()
    down = batch(10)
    with pytest.raises(SinkError) as raised:
        sink.write(down)
    assert raised.value.retryable
    pg.start()
    sink.write(down)  # the queue's retry
    sink.close()
    ids = {row[0] for row in pg.query(f"SELECT id FROM {table}")}
    assert ids == {r["id"] for r in before + after + down}


# ---------------------------------------------------------------- Redis


def redis_url_parts(url: str) -> tuple[str, str | None, int | None]:
    """(the URL redis-py gets, the stream, the MAXLEN) of a redis sink URL."""
    location = locate(url, "sink")
    sink = RedisStreamSink(location)
    sink.close()
    return location.address, sink.stream, sink.maxlen


def test_redis_url_forms() -> None:
    assert redis_url_parts("redis://:pw@h:1/3/my%3Astream?maxlen=10&socket_timeout=2") == (
        "redis://:pw@h:1/3?socket_timeout=2", "my:stream", 10)
    assert redis_url_parts("redis://h:6379/events") == ("redis://h:6379/0", "events", 1_000_000)
    assert redis_url_parts("rediss://h?maxlen=0") == ("rediss://h/0", "touchpoints", None)
    for bad in ("redis://h/x/y", "redis://h/1/2/3", "redis://h/s?maxlen=-1", "redis://h/s?maxlen=ten"):
        with pytest.raises(ValueError):
            locate(bad, "sink")


def test_redis_records_land_in_order_with_id_and_json(redis_server: RedisServer) -> None:
    sink = RedisStreamSink(f"{redis_server.url}/2/touch")
    records = batch(30)
    sink.write(records[:10])
    sink.write(records[10:])
    sink.close()
    client = redis_server.client()
    client.select(2)
    entries = client.xrange("touch")
    assert [fields["id"] for _, fields in entries] == [r["id"] for r in records]
    assert [json.loads(fields["record"]) for _, fields in entries] == records
    assert set(entries[0][1]) == {"id", "record"}


def test_redis_maxlen_trims_approximately(redis_server: RedisServer) -> None:
    sink = RedisStreamSink(f"{redis_server.url}/capped?maxlen=100")
    for _ in range(20):
        sink.write(batch(50))
    sink.close()
    length = redis_server.client().xlen("capped")
    assert 100 <= length < 1000  # ~: whole radix-tree nodes go, so a little above the cap


def test_redis_stop_and_start(redis_server: RedisServer) -> None:
    sink = RedisStreamSink(f"{redis_server.url}/s")
    first = batch(5)
    sink.write(first)
    redis_server.stop(save=True)
    down = batch(5)
    with pytest.raises(SinkError) as raised:
        sink.write(down)
    assert raised.value.retryable
    redis_server.start()
    sink.write(down)  # the queue's retry, on a new connection
    sink.close()
    ids = [f["id"] for _, f in redis_server.client().xrange("s")]
    assert ids == [r["id"] for r in first + down]


# ---------------------------------------------------------------- HTTP collector


def test_http_batches_land_in_segment_shape(collector: CollectorServer) -> None:
    sink = HttpSink(collector.url)
    records = [
        record(),
        record("exposure", slot="hero", variant="welcome", rule="hello", arm="treatment"),
        record("conversion", goal="signup", value=10.0),
        record("identify", user="u-42"),
        record("event", visitor=None, event="demo_requested", props={"plan": "pro"}),
    ]
    records[0]["utm"]["source"] = "newsletter"
    sink.write(records)
    sink.close()
    [stored] = collector.batches()
    assert stored["sentAt"].endswith("Z") and stored["auth"] is None
    messages = stored["batch"]
    assert [m["messageId"] for m in messages] == [r["id"] for r in records]
    assert [m["type"] for m in messages] == ["page", "track", "track", "identify", "track"]
    assert [m.get("event") for m in messages] == [None, "Experiment Viewed", "signup", None, "demo_requested"]
    assert [m["timestamp"] for m in messages] == [r["ts"] for r in records]
    assert messages[0]["anonymousId"] == "v1"
    assert messages[4]["anonymousId"] == records[4]["id"]  # no visitor id without consent: link nothing
    assert messages[3]["userId"] == "u-42"
    assert messages[1]["properties"]["experiment_id"] == "hero"
    assert messages[1]["properties"]["variation_id"] == "welcome"
    for message, original in zip(messages, records):
        assert {k: message["properties"][k] for k in original} == original
    assert messages[0]["context"]["campaign"]["source"] == "newsletter"
    assert "campaign" not in messages[1]["context"]
    assert messages[0]["context"]["consent"] == {"categoryPreferences": CONSENT}
    assert messages[0]["context"]["ip"] == "0.0.0.0"


def test_http_a_batch_over_the_request_limit_goes_as_several_in_order(collector: CollectorServer) -> None:
    records = batch(20)
    longest = max(len(json.dumps(to_message(r), separators=(",", ":"))) for r in records)
    HttpSink(collector.url, max_request_bytes=3 * (longest + 1)).write(records)  # 3 messages a request
    stored = collector.batches()
    assert [len(b["batch"]) for b in stored] == [3, 3, 3, 3, 3, 3, 2]
    assert [m["messageId"] for b in stored for m in b["batch"]] == [r["id"] for r in records]


def test_http_auth_from_url_userinfo_and_from_headers(collector: CollectorServer) -> None:
    with_key = collector.url.replace("http://", "http://writekey:@")
    sink = HttpSink(with_key)
    sink.write(batch(1))
    HttpSink(collector.url, headers={"Authorization": "Bearer t0ken"}).write(batch(1))
    assert [b["auth"] for b in collector.batches()] == ["Basic d3JpdGVrZXk6", "Bearer t0ken"]
    collector.answer(require_auth="Bearer right")
    with pytest.raises(PermanentSinkError) as raised:
        sink.write(batch(1))
    assert "401" in str(raised.value) and "writekey" not in str(raised.value)


def test_http_headers_and_timeout_from_the_yaml(collector: CollectorServer, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMW_TEST_COLLECTOR_TOKEN", "s3cret")
    (tmp_path / "personalize.yaml").write_text(f"""
secret_keys: ["http-sink-test-secret-0123456789"]
sink: {collector.url}
http_sink:
  headers:
    Authorization: Bearer ${{PMW_TEST_COLLECTOR_TOKEN}}
  timeout_s: 3
""")
    config = load_config(tmp_path / "personalize.yaml")
    pipeline = TouchpointPipeline.from_config(config)
    [worker] = pipeline.workers
    assert isinstance(worker.sink, HttpSink) and worker.sink.client.timeout.read == 3
    records = batch(3)
    for r in records:
        pipeline.put(r)
    assert pipeline.flush(timeout=30)
    pipeline.close()
    [stored] = collector.batches()
    assert stored["auth"] == "Bearer s3cret"
    assert [m["messageId"] for m in stored["batch"]] == [r["id"] for r in records]


@pytest.mark.parametrize("headers, problem", [
    ({"Bad Name": "x"}, "valid HTTP token"),
    ({"X-Ok": "line\r\nInjected: 1"}, "without CR, LF"),
    ({"X-Ok": "Grüße"}, "ASCII"),
])
def test_http_header_config_is_checked_at_load(headers: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config({"secret_keys": ["http-sink-test-secret-0123456789"], "sink": "https://h/v1/batch",
                     "http_sink": {"headers": headers}})


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_http_retryable_answers(collector: CollectorServer, status: int) -> None:
    collector.answer(status=status)
    sink = HttpSink(collector.url)
    records = batch(3)
    with pytest.raises(SinkError) as raised:
        sink.write(records)
    assert raised.value.retryable and str(status) in str(raised.value)
    assert collector.batches() == []
    collector.answer()
    sink.write(records)
    assert [m["messageId"] for m in collector.messages()] == [r["id"] for r in records]


def test_http_429_passes_retry_after_on(collector: CollectorServer) -> None:
    collector.answer(status=429, retry_after="7")
    with pytest.raises(SinkError) as raised:
        HttpSink(collector.url).write(batch(1))
    assert raised.value.retry_after == 7.0  # type: ignore[attr-defined]


def test_the_queue_waits_as_long_as_retry_after_asks(collector: CollectorServer, tmp_path: Path) -> None:
    collector.answer(status=429, retry_after="30")
    pipeline = TouchpointPipeline([(collector.url, HttpSink(collector.url))], max_retry_delay=60,
                                  spool_dir=tmp_path / "spool")
    [worker] = pipeline.workers
    pipeline.put(record())
    assert not pipeline.flush(timeout=5)  # refused: the record waits
    assert worker._retry_at - time.monotonic() > 25  # not the 0.1 s of a first backoff step
    collector.answer()
    assert pipeline.flush(timeout=30)  # flush() does not wait out the backoff
    pipeline.close()
    assert len(collector.messages()) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 301])
def test_http_other_answers_are_permanent(collector: CollectorServer, status: int) -> None:
    collector.answer(status=status)
    with pytest.raises(PermanentSinkError) as raised:
        HttpSink(collector.url).write(batch(1))
    assert not raised.value.retryable


def test_http_a_slow_collector_times_out_and_the_retry_duplicates_only_by_id(collector: CollectorServer) -> None:
    collector.answer(delay=1.0)
    sink = HttpSink(collector.url, timeout=0.2)
    records = batch(4)
    with pytest.raises(SinkError) as raised:
        sink.write(records)
    assert raised.value.retryable
    collector.answer()
    sink.write(records)
    sink.close()
    time.sleep(1.0)  # let the slow request finish storing on the collector's side
    ids = [m["messageId"] for m in collector.messages()]
    assert set(ids) == {r["id"] for r in records} and len(ids) in (4, 8)


def test_http_collector_down_then_back(collector: CollectorServer) -> None:
    sink = HttpSink(collector.url)
    first, down = batch(2), batch(2)
    sink.write(first)
    collector.stop()
    with pytest.raises(SinkError) as raised:
        sink.write(down)
    assert raised.value.retryable
    collector.start()
    sink.write(down)
    sink.close()
    assert [m["messageId"] for m in collector.messages()] == [r["id"] for r in first + down]


def test_a_collector_write_key_stays_out_of_stats_and_logs() -> None:
    assert sink_label("https://wk_123:@api.segment.io/v1/batch") == "https://***@api.segment.io/v1/batch"
    assert sink_label("http://u:p@h/v1/batch?x=1") == "http://***@h/v1/batch?x=1"
    assert sink_label("postgresql://app:pw@db/x") == "postgresql://app:***@db/x"


def test_to_message_of_a_suppress_record() -> None:
    message = to_message(record("suppress", visitor="v9", user="u9"))
    assert (message["type"], message["event"], message["userId"], message["anonymousId"]) == (
        "track", "suppress", "u9", "v9")


# ---------------------------------------------------------------- the demo, one YAML line changed


@pytest.mark.parametrize("kind", ["postgresql", "redis"])
def test_the_demo_with_its_sink_line_pointed_at_a_server(kind: str, tmp_path: Path, pg: PostgresServer,
                                                         redis_server: RedisServer) -> None:
    from starlette.testclient import TestClient

    from example_site.app import create_app

    site = tmp_path / "example_site"
    shutil.copytree(Path(__file__).resolve().parent.parent / "example_site", site,
                    ignore=shutil.ignore_patterns("data", "__pycache__", ".personalize_spool"))
    table = unique_table()
    url = f"{pg.url}?table={table}" if kind == "postgresql" else f"{redis_server.url}/0/demo"
    original = (site / "personalize.yaml").read_text()
    changed = re.sub(r"^sink: .*$", f"sink: {url}", original, count=1, flags=re.M)
    assert len(set(original.splitlines()) ^ set(changed.splitlines())) == 2  # one line out, one in
    (site / "personalize.yaml").write_text(changed)
    with TestClient(create_app(site / "personalize.yaml")) as client:  # the lifespan flushes at exit
        assert client.post("/_personalize/consent", json={"all": True},
                           headers={"origin": "http://testserver"}).status_code == 204
        for path in ("/", "/pricing", "/blog"):
            assert client.get(path).status_code == 200
    if kind == "postgresql":
        records = [row[0] for row in pg.query(f"SELECT record FROM {table}")]
    else:
        records = [json.loads(f["record"]) for _, f in redis_server.client().xrange("demo")]
    assert sorted(r["path"] for r in records if r["type"] == "pageview") == ["/", "/blog", "/pricing"]
    assert all(r["visitor"] for r in records)


# ---------------------------------------------------------------- python:module:callable


SINK_MODULE = '''
received = []
closed = []

def collect(batch):
    received.append(list(batch))

class Warehouse:
    def write(self, batch):
        received.append(("warehouse", len(batch)))
    def close(self):
        closed.append("warehouse")

class WriteOnly:
    def write(self, batch):
        received.append(("write-only", len(batch)))

class Holder:
    inner = WriteOnly()

not_callable = 42
'''


@pytest.fixture
def sink_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = f"site_sinks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(SINK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_python_sink_function_class_and_object(sink_module: str) -> None:
    records = batch(2)
    load_python_sink(f"{sink_module}:collect").write(records)
    warehouse = load_python_sink(f"{sink_module}:Warehouse")
    warehouse.write(records)
    warehouse.close()
    write_only = load_python_sink(f"{sink_module}:Holder.inner")
    write_only.write(records[:1])
    write_only.close()
    module = sys.modules[sink_module]
    assert module.received == [records, ("warehouse", 2), ("write-only", 1)]
    assert module.closed == ["warehouse"]


@pytest.mark.parametrize("spec, message", [
    ("nomodule_here_xyz:f", "cannot import"),
    ("{mod}:missing", "has no"),
    ("{mod}:not_callable", "neither callable"),
    ("{mod}", "python:package.module:name"),
])
def test_python_sink_errors_say_what_is_wrong(sink_module: str, spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_python_sink(spec.format(mod=sink_module))
