"""The SQLite sink: schema on first use, WAL, duplicate ids ignored, JSON columns, through the pipeline."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from personalize_mw.config import load_config
from personalize_mw.touchpoints.queue import TouchpointPipeline
from personalize_mw.touchpoints.record import FIELDS, finalize_batch, new_record
from personalize_mw.touchpoints.sink import open_sink
from personalize_mw.touchpoints.sqlite import SqliteSink

CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}


def records(count: int, visitor: str = "v1") -> list[dict[str, Any]]:
    utm = {"source": "news", "medium": "email", "campaign": None, "term": None, "content": None}
    return finalize_batch([new_record("pageview", time.time(), visitor=visitor, session="s1", path=f"/{i}",
                                      referrer_host=None, channel="email", utm=dict(utm), consent=CONSENT)
                           for i in range(count)])


def rows(path: Path, sql: str = "SELECT * FROM touchpoints ORDER BY rowid") -> list[sqlite3.Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_table_indexes_and_wal_on_first_write(tmp_path: Path) -> None:
    db = tmp_path / "data" / "tp.db"
    sink = SqliteSink(db)
    sink.write(records(3))
    sink.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {row[1]: row for row in conn.execute("PRAGMA index_list(touchpoints)")}
    columns = {row[1]: row for row in conn.execute("PRAGMA table_info(touchpoints)")}
    conn.close()
    assert {"touchpoints_visitor", "touchpoints_ts"} <= set(indexes)
    assert any(row[3] == "pk" for row in indexes.values())  # id is the primary key
    assert list(columns) == [*FIELDS, "extra"] and columns["id"][5] == 1


def test_values_and_nested_objects_as_json_text(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "tp.db")
    batch = records(2)
    batch[1]["value"] = 49.5
    batch[1]["props"] = {"plan": "pro", "seats": 3}
    sink.write(batch)
    sink.close()
    stored = rows(tmp_path / "tp.db")
    assert [r["id"] for r in stored] == [r["id"] for r in batch]
    assert json.loads(stored[0]["utm"]) == batch[0]["utm"] and json.loads(stored[0]["consent"]) == CONSENT
    assert stored[1]["value"] == 49.5 and json.loads(stored[1]["props"]) == {"plan": "pro", "seats": 3}
    assert stored[0]["props"] is None and stored[0]["schema"] == batch[0]["schema"]
    assert stored[0]["extra"] is None


def test_a_replayed_batch_changes_nothing(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "tp.db")
    batch = records(5)
    sink.write(batch)
    sink.write(batch[2:] + records(2))  # three repeats, two new
    sink.close()
    assert rows(tmp_path / "tp.db", "SELECT count(*), count(DISTINCT id) FROM touchpoints")[0][:] == (7, 7)


def test_unknown_fields_are_kept_in_extra(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "tp.db")
    batch = records(1)
    batch[0]["future_field"] = {"name": "hero-test"}
    sink.write(batch)
    sink.close()
    assert json.loads(rows(tmp_path / "tp.db")[0]["extra"]) == {"future_field": {"name": "hero-test"}}


def test_an_older_table_gets_the_new_columns(tmp_path: Path) -> None:
    db = tmp_path / "tp.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE touchpoints (id TEXT PRIMARY KEY NOT NULL, ts TEXT, type TEXT, visitor TEXT)")
    conn.execute("INSERT INTO touchpoints VALUES ('old-1', '2025-01-01T00:00:00.000Z', 'pageview', 'v0')")
    conn.commit()
    conn.close()
    sink = SqliteSink(db)
    sink.write(records(1))
    sink.close()
    stored = rows(db)
    assert [r["id"] for r in stored][0] == "old-1" and len(stored) == 2 and stored[1]["path"] == "/0"


def test_url_options_and_names(tmp_path: Path) -> None:
    sink = open_sink("sqlite:sub/tp.db?table=events_2026", lambda p: tmp_path / p)
    assert isinstance(sink, SqliteSink) and sink.path == tmp_path / "sub" / "tp.db" and sink.table == "events_2026"
    with pytest.raises(ValueError):
        open_sink("sqlite:tp.db?table=x;drop", lambda p: tmp_path / p)
    with pytest.raises(ValueError):
        open_sink("sqlite:tp.db?tabel=x", lambda p: tmp_path / p)


def test_a_locked_database_is_retried_by_the_pipeline_not_lost(tmp_path: Path) -> None:
    db = tmp_path / "tp.db"
    sink = SqliteSink(db)
    sink.write(records(1))
    import personalize_mw.touchpoints.sqlite as module

    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    old_timeout = module.BUSY_TIMEOUT_MS
    sink.close()
    module.BUSY_TIMEOUT_MS = 50  # give up quickly while the lock is held
    try:
        pipeline = TouchpointPipeline([("sqlite:tp.db", sink)], flush_interval=3600, spool_dir=tmp_path / "spool",
                                      max_retry_delay=0.01)
        for record in records(20, visitor="v2"):
            pipeline.put(record)
        assert pipeline.flush(10) is False  # database is locked: spooled
        assert pipeline.stats()["sqlite:tp.db"]["spooled"] == 20
        blocker.execute("COMMIT")
        assert pipeline.flush(10) is True
        pipeline.close()
    finally:
        module.BUSY_TIMEOUT_MS = old_timeout
        blocker.close()
    assert rows(db, "SELECT count(*) FROM touchpoints WHERE visitor = 'v2'")[0][0] == 20


def test_a_list_of_sinks_from_yaml_config(tmp_path: Path) -> None:
    config = load_config({"secret_keys": ["x" * 16], "base_dir": str(tmp_path),
                          "sink": ["jsonl:tp.jsonl", "sqlite:tp.db"],
                          "delivery": {"flush_interval_s": 60}})
    pipeline = TouchpointPipeline.from_config(config)
    assert config.spool_path() == tmp_path / ".personalize_spool"
    for record in records(4):
        pipeline.put(record)
    pipeline.close()
    jsonl_ids = [json.loads(line)["id"] for line in (tmp_path / "tp.jsonl").read_text().splitlines()]
    assert jsonl_ids == [r["id"] for r in rows(tmp_path / "tp.db")] and len(jsonl_ids) == 4
