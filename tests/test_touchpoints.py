"""Touchpoints: record stamping, the bounded queue with the real JSONL sink, retries, flush on close."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from personalize_mw.config import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.touchpoints.jsonl import JsonlSink
from personalize_mw.touchpoints.sink import open_sink
from personalize_mw.touchpoints.queue import BATCH_SIZE, TouchpointQueue
from personalize_mw.touchpoints.record import FIELDS, finalize, format_ts, new_record

RFC3339_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
SLOW = 3600.0  # a flush interval the worker never reaches during a test


def record(path: str = "/", t: float | None = None, **extra: Any) -> dict[str, Any]:
    return new_record("pageview", time.time() if t is None else t, visitor="v1", session="s1", path=path,
                      referrer_host=None, channel="direct",
                      utm={"source": None, "medium": None, "campaign": None, "term": None, "content": None},
                      consent=CONSENT, **extra)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------- records


def test_format_ts() -> None:
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert format_ts(1_764_000_000.25) == "2025-11-24T16:00:00.250Z"
    assert format_ts(1_764_000_000.9999) == "2025-11-24T16:00:00.999Z"  # truncated, never ".1000"


def test_finalize_is_idempotent() -> None:
    r = finalize(record(t=1_764_000_000.5))
    first = (r["id"], r["ts"])
    assert "_t" not in r
    assert (finalize(r)["id"], finalize(r)["ts"]) == first


def test_queue_writes_uuid4_ids_and_rfc3339_ms_utc(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    queue = TouchpointQueue(JsonlSink(sink_path), size=100, flush_interval=SLOW)
    t = 1_764_000_000.123
    for i in range(5):
        assert queue.put(record(f"/p{i}", t=t + i))
    queue.close()
    written = lines(sink_path)
    assert [r["path"] for r in written] == [f"/p{i}" for i in range(5)]
    assert len({r["id"] for r in written}) == 5
    for i, r in enumerate(written):
        assert uuid.UUID(r["id"]).version == 4
        assert RFC3339_MS_UTC.match(r["ts"])
        assert r["ts"] == format_ts(t + i)
        assert list(r) == list(FIELDS)  # fixed field order, no private keys
        assert r["consent"] == CONSENT


def test_unicode_is_written_as_utf8(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    queue = TouchpointQueue(JsonlSink(sink_path), flush_interval=SLOW)
    queue.put(record("/grüße/日本"))
    queue.close()
    assert "/grüße/日本".encode() in sink_path.read_bytes()
    assert lines(sink_path)[0]["path"] == "/grüße/日本"


# ---------------------------------------------------------------- flush and close


def test_flush_on_close(tmp_path: Path) -> None:
    sink_path = tmp_path / "nested" / "dir" / "tp.jsonl"
    queue = TouchpointQueue(JsonlSink(sink_path), flush_interval=SLOW)
    for i in range(3):
        queue.put(record(f"/{i}"))
    assert not sink_path.exists()  # nothing written yet: the worker sleeps
    queue.close()
    assert [r["path"] for r in lines(sink_path)] == ["/0", "/1", "/2"]
    assert queue.stats() == {"queued": 0, "enqueued": 3, "written": 3, "dropped": 0, "failed_writes": 0}


def test_put_after_close_is_dropped(tmp_path: Path) -> None:
    queue = TouchpointQueue(JsonlSink(tmp_path / "tp.jsonl"), flush_interval=SLOW)
    queue.close()
    assert queue.put(record()) is False
    assert queue.dropped == 1
    queue.close()  # a second close is harmless


def test_more_than_one_batch(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    queue = TouchpointQueue(JsonlSink(sink_path), size=1000, flush_interval=SLOW)
    count = BATCH_SIZE * 2 + 17
    for i in range(count):
        queue.put(record(f"/{i}"))
    queue.close()
    assert [r["path"] for r in lines(sink_path)] == [f"/{i}" for i in range(count)]


def test_worker_writes_without_close(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    queue = TouchpointQueue(JsonlSink(sink_path), flush_interval=0.01)
    try:
        queue.put(record("/bg"))
        for _ in range(500):  # wait for the background writer, not a timing assertion
            if queue.written == 1:
                break
            time.sleep(0.01)
        assert [r["path"] for r in lines(sink_path)] == ["/bg"]
    finally:
        queue.close()


def test_concurrent_producers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    queue = TouchpointQueue(JsonlSink(sink_path), size=100_000, flush_interval=0.005)

    def produce(n: int) -> None:
        for i in range(500):
            queue.put(record(f"/{n}/{i}"))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.close()
    paths = [r["path"] for r in lines(sink_path)]
    assert sorted(paths) == sorted(f"/{n}/{i}" for n in range(4) for i in range(500))
    for n in range(4):  # each producer's records stay in order
        mine = [p for p in paths if p.startswith(f"/{n}/")]
        assert mine == [f"/{n}/{i}" for i in range(500)]


# ---------------------------------------------------------------- bounded


def test_bounded_queue_drops_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink_path = tmp_path / "tp.jsonl"
    queue = TouchpointQueue(JsonlSink(sink_path), size=10, flush_interval=SLOW)
    with caplog.at_level(logging.WARNING, logger="personalize_mw"):
        accepted = [queue.put(record(f"/{i}")) for i in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    assert queue.stats()["dropped"] == 5 and queue.stats()["queued"] == 10
    assert "queue full" in caplog.text
    assert caplog.text.count("queue full") == 1  # logged once, not per drop
    queue.close()
    assert [r["path"] for r in lines(sink_path)] == [f"/{i}" for i in range(10)]


# ---------------------------------------------------------------- a failing sink


def test_failing_sink_keeps_the_batch_and_retries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the sink's directory should be")
    sink_path = blocker / "tp.jsonl"
    queue = TouchpointQueue(JsonlSink(sink_path), flush_interval=SLOW, shutdown_timeout=1)
    for i in range(3):
        queue.put(record(f"/{i}"))

    with caplog.at_level(logging.ERROR, logger="personalize_mw"):
        assert queue.flush() is False  # the sink raised; nothing reached the caller
    assert queue.failed_writes == 1
    assert queue.stats()["queued"] == 3
    assert "kept for retry" in caplog.text
    assert queue.flush() is False  # still failing, still kept
    assert queue.failed_writes == 2

    queue.put(record("/3"))
    blocker.unlink()  # the disk comes back
    assert queue.flush() is True
    queue.close()
    written = lines(sink_path)
    assert [r["path"] for r in written] == ["/0", "/1", "/2", "/3"]
    assert queue.stats()["written"] == 4 and queue.stats()["queued"] == 0


def test_retried_records_keep_their_ids(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    class OnceFailingSink(JsonlSink):
        # The real file sink, with one failed write before it recovers (a full disk).
        def write(self, records: list[dict[str, Any]]) -> None:
            seen.append([r["id"] for r in records])
            if len(seen) == 1:
                raise OSError(28, "No space left on device")
            super().write(records)

    sink_path = tmp_path / "tp.jsonl"
    queue = TouchpointQueue(OnceFailingSink(sink_path), flush_interval=SLOW)
    queue.put(record("/a"))
    queue.put(record("/b"))
    assert queue.flush() is False
    assert queue.flush() is True
    queue.close()
    assert seen[0] == seen[1]
    assert [r["id"] for r in lines(sink_path)] == seen[0]


def test_close_with_a_dead_sink_does_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "blocked"
    blocker.write_text("x")
    queue = TouchpointQueue(JsonlSink(blocker / "tp.jsonl"), flush_interval=SLOW, shutdown_timeout=0.5)
    queue.put(record())
    with caplog.at_level(logging.ERROR, logger="personalize_mw"):
        queue.close()
    assert "1 touchpoints not written at shutdown" in caplog.text


def test_open_sink(tmp_path: Path) -> None:
    sink = open_sink("jsonl:tp.jsonl", lambda p: tmp_path / p)
    assert isinstance(sink, JsonlSink) and sink.path == tmp_path / "tp.jsonl"
    with pytest.raises(ValueError):
        open_sink("kafka:topic", lambda p: p)


# ---------------------------------------------------------------- from the core


def test_core_records_reach_the_file(tmp_path: Path, make_core_config: Callable[..., dict]) -> None:
    config = make_core_config(
        goals={"signup": {"path": "/thanks", "value": 50}},
        slots={"hero": {"rules": [{"if": {"path": "/thanks"}, "variant": "thanks", "template": "<b>Thanks</b>"}]}},
    )
    core = Personalizer(load_config(config))
    headers = {"cookie": "pmw_consent=analytics=1&personalization=1&advertising=0",
               "referer": "https://www.google.com/", "user-agent": "Mozilla/5.0"}
    ctx = RequestContext("GET", "http", "example.com", "/thanks", "utm_source=news&utm_medium=email", headers)
    outcome = core.visit(ctx, b"<!-- personalize:hero -->x<!-- /personalize:hero -->", time.time())
    core.commit(outcome, rewritten=True)
    core.queue.close()

    written = lines(tmp_path / "touchpoints.jsonl")
    assert [r["type"] for r in written] == ["pageview", "conversion", "exposure"]
    visitor = core.codec.load(outcome.cookies[0].value)
    assert visitor is not None
    for r in written:
        assert r["visitor"] == visitor.visitor_id and r["session"] == visitor.session_id
        assert r["channel"] == "email" and r["referrer_host"] == "www.google.com"
        assert r["utm"]["source"] == "news" and r["consent"]["analytics"] is True
    assert written[1]["goal"] == "signup" and written[1]["value"] == 50
    assert (written[2]["slot"], written[2]["variant"], written[2]["rule"], written[2]["arm"]) == \
        ("hero", "thanks", "hero.0", "treatment")


def test_core_drops_exposures_of_unsent_variants(tmp_path: Path, make_core_config: Callable[..., dict]) -> None:
    config = make_core_config(slots={"hero": {"rules": [{"if": {"path": "/"}, "variant": "v", "template": "V"}]}})
    core = Personalizer(load_config(config))
    ctx = RequestContext("GET", "http", "example.com", "/", "", {"user-agent": "Mozilla/5.0"})
    outcome = core.visit(ctx, b"<!-- personalize:hero -->x<!-- /personalize:hero -->", time.time())
    core.commit(outcome, rewritten=False)
    core.queue.close()
    assert [r["type"] for r in lines(tmp_path / "touchpoints.jsonl")] == ["pageview"]
