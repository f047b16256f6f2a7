"""Delivery: the per-sink queue, batches, retries, the spool, the dead letter, flush/close and stats.

The sinks are the real JSONL sink, made to fail the way disks and collectors
fail (raising for a while, refusing for good, hanging). Waits are bounded
loops on observable state; nothing asserts on elapsed time.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import personalize_mw
from personalize_mw.touchpoints.jsonl import JsonlSink
from personalize_mw.touchpoints.queue import TouchpointPipeline, backoff_step
from personalize_mw.touchpoints.record import new_record
from personalize_mw.touchpoints.sink import PermanentSinkError, SinkError

SLOW = 3600.0  # a flush interval the worker never reaches during a test
CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
UTM = {"source": None, "medium": None, "campaign": None, "term": None, "content": None}


def record(path: str = "/") -> dict[str, Any]:
    return new_record("pageview", time.time(), visitor="v1", session="s1", path=path, referrer_host=None,
                      channel="direct", utm=dict(UTM), consent=CONSENT)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


class FlakySink(JsonlSink):
    """The real file sink, with a switch: ``down`` raises like an unreachable server."""

    def __init__(self, path: Path, down: bool = False, failures: int = 0) -> None:
        super().__init__(path)
        self.down = down
        self.failures = failures  # fail this many writes, then work
        self.attempts: list[list[str]] = []  # ids of every batch offered

    def write(self, records: list[dict[str, Any]]) -> None:
        self.attempts.append([r["id"] for r in records])
        if self.down:
            raise SinkError("connection refused")
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        super().write(records)


def make(tmp_path: Path, sink: Any, **options: Any) -> TouchpointPipeline:
    settings: dict[str, Any] = {"flush_interval": SLOW, "spool_dir": tmp_path / "spool",
                                "max_retry_delay": 0.01, "shutdown_timeout": 5.0}
    settings.update(options)
    return TouchpointPipeline([("jsonl:test.jsonl", sink)], **settings)


def only(stats: dict[str, dict[str, int]]) -> dict[str, int]:
    (counts,) = stats.values()
    return counts


def wait_for(condition: Callable[[], bool], rounds: int = 2000) -> bool:
    """Poll state the worker changes; a bound on tries, not a timing assertion."""
    for _ in range(rounds):
        if condition():
            return True
        time.sleep(0.005)
    return condition()


# ---------------------------------------------------------------- batches, flush, close


def test_close_writes_everything_in_order_with_ids_and_ts(tmp_path: Path) -> None:
    sink_path = tmp_path / "nested" / "tp.jsonl"
    pipeline = make(tmp_path, JsonlSink(sink_path), batch_size=7)
    for i in range(30):
        assert pipeline.put(record(f"/{i}"))
    pipeline.close()
    written = lines(sink_path)
    assert [r["path"] for r in written] == [f"/{i}" for i in range(30)]
    assert len({r["id"] for r in written}) == 30 and all(r["ts"] for r in written)
    assert only(pipeline.stats()) == {"queued": 0, "sent": 30, "retried": 0, "spooled": 0, "dropped": 0,
                                      "enqueued": 30}
    assert not (tmp_path / "spool").exists()  # a healthy sink never touches the disk spool


def test_worker_writes_by_itself(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, JsonlSink(sink_path), flush_interval=0.01)
    try:
        pipeline.put(record("/bg"))
        assert wait_for(lambda: only(pipeline.stats())["sent"] == 1)
        assert [r["path"] for r in lines(sink_path)] == ["/bg"]
    finally:
        pipeline.close()


def test_a_backlog_of_a_quarter_of_the_queue_wakes_the_worker_and_a_full_batch_does_not(tmp_path: Path) -> None:
    """Each wake-up takes the GIL from the request thread: a batch alone waits for the timer."""
    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, JsonlSink(sink_path), batch_size=10, queue_size=80)
    try:
        for i in range(19):
            pipeline.put(record(f"/{i}"))
        time.sleep(0.3)
        assert only(pipeline.stats())["sent"] == 0  # the interval is an hour
        pipeline.put(record("/19"))  # the 20th: a quarter of the queue
        assert wait_for(lambda: only(pipeline.stats())["sent"] == 20)
        assert [r["path"] for r in lines(sink_path)] == [f"/{i}" for i in range(20)]
    finally:
        pipeline.close()


def test_a_large_queue_wakes_its_worker_after_three_batches_not_a_quarter(tmp_path: Path) -> None:
    """What the worker takes at a wake is one stretch on the request loop's GIL: a few batches, not 2,500 records."""
    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, JsonlSink(sink_path), batch_size=10, queue_size=400)  # a quarter would be 100
    try:
        for i in range(29):
            pipeline.put(record(f"/{i}"))
        time.sleep(0.3)
        assert only(pipeline.stats())["sent"] == 0  # the interval is an hour
        pipeline.put(record("/29"))  # the 30th: three batches
        assert wait_for(lambda: only(pipeline.stats())["sent"] == 30)
    finally:
        pipeline.close()


class Recording(JsonlSink):
    """A JSONL sink that also keeps the size of each batch it was given."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def write(self, records: list[dict[str, Any]]) -> None:
        self.batches.append(len(records))
        super().write(records)


def test_woken_by_the_backlog_the_worker_writes_full_batches_and_the_timer_the_rest(tmp_path: Path) -> None:
    sink = Recording(tmp_path / "tp.jsonl")
    pipeline = make(tmp_path, sink, batch_size=10, queue_size=80)
    try:
        worker = pipeline.workers[0]
        for i in range(25):
            worker._records.append(record(f"/{i}"))
        worker._pass(force=False, whole=False)
        assert sink.batches == [25]  # behind: one large batch (max_batch)
        for i in range(25, 32):
            worker._records.append(record(f"/{i}"))
        worker._pass(force=False, whole=False)
        assert len(sink.batches) == 1 and len(worker._records) == 7  # less than a batch: left
        worker._pass(force=False, whole=True)
        assert sink.batches == [25, 7]
    finally:
        pipeline.close()


def test_a_page_of_records_queued_in_one_call_wakes_the_worker_when_it_crosses_the_backlog(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, JsonlSink(sink_path), batch_size=10, queue_size=80)
    try:
        pipeline.put(record("/0"))  # starts the worker
        for page in range(6):  # 1 + 18 records: short of a quarter of the queue
            assert pipeline.put_many([record(f"/{page}.{i}") for i in range(3)]) is True
        time.sleep(0.3)
        assert only(pipeline.stats())["sent"] == 0
        assert pipeline.put_many([record("/6.0"), record("/6.1")]) is True  # 19 -> 21 passes 20, not equals it
        assert wait_for(lambda: only(pipeline.stats())["sent"] == 21)
        assert [r["path"] for r in lines(sink_path)] == ["/0", *(f"/{p}.{i}" for p in range(6) for i in range(3)),
                                                        "/6.0", "/6.1"]
    finally:
        pipeline.close()


def test_a_page_of_records_that_does_not_fit_is_queued_as_far_as_it_goes_and_the_rest_counted(
        tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, JsonlSink(sink_path), queue_size=10, spool_max_bytes=0)
    assert pipeline.put_many([record(f"/{i}") for i in range(8)]) is True
    assert pipeline.put_many([record(f"/{i}") for i in range(8, 12)]) is False  # two fit, two dropped
    assert only(pipeline.stats())["dropped"] == 2 and only(pipeline.stats())["queued"] == 10
    pipeline.close()
    assert [r["path"] for r in lines(sink_path)] == [f"/{i}" for i in range(10)]
    assert pipeline.put_many([record("/late")]) is False and only(pipeline.stats())["dropped"] == 3


def test_put_after_close_is_dropped_and_counted(tmp_path: Path) -> None:
    pipeline = make(tmp_path, JsonlSink(tmp_path / "tp.jsonl"))
    pipeline.close()
    assert pipeline.put(record()) is False
    assert only(pipeline.stats())["dropped"] == 1
    pipeline.close()  # a second close is harmless


def test_concurrent_producers_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, JsonlSink(sink_path), queue_size=100_000, flush_interval=0.005)

    def produce(n: int) -> None:
        for i in range(500):
            pipeline.put(record(f"/{n}/{i}"))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pipeline.close()
    paths = [r["path"] for r in lines(sink_path)]
    assert sorted(paths) == sorted(f"/{n}/{i}" for n in range(4) for i in range(500))
    for n in range(4):  # each producer's records stay in order
        assert [p for p in paths if p.startswith(f"/{n}/")] == [f"/{n}/{i}" for i in range(500)]


def test_every_sink_gets_every_record_with_the_same_id(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    pipeline = TouchpointPipeline([("jsonl:a", JsonlSink(a)), ("jsonl:b", JsonlSink(b))],
                                  flush_interval=0.005, spool_dir=tmp_path / "spool")
    for i in range(250):
        pipeline.put(record(f"/{i}"))
    for page in range(50):  # a page's records in one call, as the middleware queues them
        assert pipeline.put_many([record(f"/page{page}"), record(f"/page{page}")]) is True
    pipeline.close()
    assert lines(a) == lines(b) and len(lines(a)) == 350
    assert set(pipeline.stats()) == {"jsonl:a", "jsonl:b"}


def test_one_sink_down_does_not_hold_back_the_other(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.jsonl", FlakySink(tmp_path / "bad.jsonl", down=True)
    pipeline = TouchpointPipeline([("jsonl:good", JsonlSink(good)), ("jsonl:bad", bad)],
                                  flush_interval=SLOW, max_retry_delay=0.01, spool_dir=tmp_path / "spool")
    for i in range(50):
        pipeline.put(record(f"/{i}"))
    assert pipeline.flush(5) is False  # one sink could not take them
    stats = pipeline.stats()
    assert stats["jsonl:good"]["sent"] == 50
    assert stats["jsonl:bad"]["spooled"] == 50 and stats["jsonl:bad"]["sent"] == 0
    bad.down = False
    assert pipeline.flush(5) is True
    pipeline.close()
    assert [r["id"] for r in lines(tmp_path / "bad.jsonl")] == [r["id"] for r in lines(good)]


# ---------------------------------------------------------------- retries


def test_backoff_doubles_from_a_tenth_of_a_second_up_to_the_cap() -> None:
    assert [backoff_step(n, 60) for n in range(1, 5)] == [0.1, 0.2, 0.4, 0.8]
    assert backoff_step(10, 60) == 51.2 and backoff_step(11, 60) == 60 and backoff_step(10_000, 60) == 60
    assert backoff_step(3, 0.25) == 0.25


def test_a_failed_batch_is_retried_with_the_same_ids(tmp_path: Path) -> None:
    sink = FlakySink(tmp_path / "tp.jsonl", failures=1)
    pipeline = make(tmp_path, sink, spool_max_bytes=0)  # no spool: the batch waits in memory
    pipeline.put(record("/a"))
    pipeline.put(record("/b"))
    assert pipeline.flush() is False
    assert only(pipeline.stats())["queued"] == 2 and only(pipeline.stats())["retried"] == 2
    assert pipeline.flush() is True
    pipeline.close()
    assert sink.attempts[0] == sink.attempts[1]
    assert [r["id"] for r in lines(tmp_path / "tp.jsonl")] == sink.attempts[0]


def test_sink_down_then_back_everything_arrives_once_by_id(tmp_path: Path) -> None:
    """The worker alone (no flush calls): failures, backoff, spooling, replay in order."""
    sink = FlakySink(tmp_path / "tp.jsonl", down=True)
    pipeline = make(tmp_path, sink, flush_interval=0.005, batch_size=50, queue_size=200)
    for i in range(3000):
        assert pipeline.put(record(f"/{i}")), "memory stays free: the spool takes the backlog"
        if i % 100 == 99:
            assert wait_for(lambda: only(pipeline.stats())["queued"] == 0)  # the worker spools it all
    assert wait_for(lambda: only(pipeline.stats())["spooled"] > 0)
    assert only(pipeline.stats())["sent"] == 0
    sink.down = False
    assert wait_for(lambda: only(pipeline.stats())["sent"] >= 3000)
    pipeline.close()
    written = lines(tmp_path / "tp.jsonl")
    assert [r["path"] for r in written] == [f"/{i}" for i in range(3000)]  # in order, none twice
    stats = only(pipeline.stats())
    assert stats["dropped"] == 0 and stats["spooled"] == 0 and stats["retried"] > 0
    assert not list((tmp_path / "spool").glob("*.spool"))  # an empty spool is cleaned up at close


def test_a_write_that_fails_after_storing_repeats_only_by_id(tmp_path: Path) -> None:
    class AckLost(JsonlSink):
        """Stores the batch, then the acknowledgement is lost (a timeout after a commit)."""

        calls = 0

        def write(self, records: list[dict[str, Any]]) -> None:
            super().write(records)
            AckLost.calls += 1
            if AckLost.calls == 1:
                raise TimeoutError("read timeout")

    pipeline = make(tmp_path, AckLost(tmp_path / "tp.jsonl"))
    for i in range(5):
        pipeline.put(record(f"/{i}"))
    pipeline.flush()
    assert pipeline.flush() is True
    pipeline.close()
    written = lines(tmp_path / "tp.jsonl")
    assert len(written) == 10 and len({r["id"] for r in written}) == 5  # at least once: twice, same ids


# ---------------------------------------------------------------- permanent errors


def test_a_permanent_error_sends_the_batch_to_the_dead_letter_file(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    class Refusing(JsonlSink):
        def write(self, records: list[dict[str, Any]]) -> None:
            if any(r["path"] == "/poison" for r in records):
                raise PermanentSinkError("400 Bad Request")
            super().write(records)

    pipeline = make(tmp_path, Refusing(tmp_path / "tp.jsonl"), batch_size=2)
    for path in ("/0", "/1", "/poison", "/3", "/4", "/5"):
        pipeline.put(record(path))
    with caplog.at_level(logging.ERROR, logger="personalize_mw"):
        assert pipeline.flush() is True  # settled: nothing will be retried
    pipeline.close()
    assert [r["path"] for r in lines(tmp_path / "tp.jsonl")] == ["/0", "/1", "/4", "/5"]
    (dead,) = (tmp_path / "spool").glob("*.dead.jsonl")
    assert [r["path"] for r in lines(dead)] == ["/poison", "/3"]  # the whole batch, with its ids
    stats = only(pipeline.stats())
    assert stats["dropped"] == 2 and stats["sent"] == 4 and stats["retried"] == 0
    assert "refused 2 touchpoints for good" in caplog.text and dead.name in caplog.text


# ---------------------------------------------------------------- bounds


def test_memory_bound_without_spool_drops_counts_and_logs_once(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, JsonlSink(sink_path), queue_size=10, spool_max_bytes=0)
    with caplog.at_level(logging.WARNING, logger="personalize_mw"):
        accepted = [pipeline.put(record(f"/{i}")) for i in range(15)]
    assert accepted == [True] * 10 + [False] * 5
    assert only(pipeline.stats())["dropped"] == 5 and only(pipeline.stats())["queued"] == 10
    assert caplog.text.count("queue of jsonl:test.jsonl full") == 1  # rate-limited, not per drop
    pipeline.close()
    assert [r["path"] for r in lines(sink_path)] == [f"/{i}" for i in range(10)]


def test_a_full_memory_queue_goes_to_the_spool_not_nowhere(tmp_path: Path) -> None:
    # The worker is stuck in a write (a saturated server starves it the same way):
    # put() itself moves memory to disk instead of dropping while the spool has room.
    release = threading.Event()

    class Stuck(JsonlSink):
        def write(self, records: list[dict[str, Any]]) -> None:
            release.wait()
            super().write(records)

    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, Stuck(sink_path), queue_size=50, batch_size=10, flush_interval=0.001)
    total = 2_000
    assert all([pipeline.put(record(f"/{i}")) for i in range(total)])
    stats = only(pipeline.stats())
    assert stats["dropped"] == 0 and stats["spooled"] > 0
    release.set()
    assert pipeline.flush(10) is True
    pipeline.close()
    written = lines(sink_path)
    assert sorted(r["path"] for r in written) == sorted(f"/{i}" for i in range(total))
    assert only(pipeline.stats())["dropped"] == 0


def test_a_worker_that_is_behind_writes_large_batches_and_a_poison_record_buries_only_its_batch(
        tmp_path: Path) -> None:
    class Counting(JsonlSink):
        max_batch = 1000
        sizes: list[int] = []

        def write(self, records: list[dict[str, Any]]) -> None:
            self.sizes.append(len(records))
            if any(r["path"] == "/poison" for r in records):
                raise PermanentSinkError("refused")
            super().write(records)

    sink = Counting(tmp_path / "tp.jsonl")
    pipeline = make(tmp_path, sink, queue_size=5_000, batch_size=10)
    for i in range(900):
        pipeline.put(record("/poison" if i == 455 else f"/{i}"))
    assert pipeline.flush(10) is True
    pipeline.close()
    assert max(sink.sizes) > 10 and max(sink.sizes) <= 1000  # catch-up batches, bounded by max_batch
    assert len(lines(tmp_path / "tp.jsonl")) == 890
    assert only(pipeline.stats())["dropped"] == 10


def test_spool_full_drops_are_counted_and_the_rest_arrives(tmp_path: Path) -> None:
    sink = FlakySink(tmp_path / "tp.jsonl", down=True)
    pipeline = make(tmp_path, sink, queue_size=20, batch_size=10, spool_max_bytes=20_000)
    total = 400
    for i in range(total):
        pipeline.put(record(f"/{i}"))
        if i % 10 == 9:
            pipeline.flush(5)  # the worker tries, fails and spools what fits
    stats = only(pipeline.stats())
    assert stats["dropped"] > 0 and stats["spooled"] > 0
    assert stats["spooled"] + stats["queued"] + stats["dropped"] == total  # every record accounted for
    assert sum(p.stat().st_size for p in (tmp_path / "spool").glob("*.spool")) <= 20_000
    sink.down = False
    assert pipeline.flush(5) is True
    pipeline.close()
    stats = only(pipeline.stats())
    assert len(lines(tmp_path / "tp.jsonl")) == stats["sent"] == total - stats["dropped"]


def test_unwritable_spool_counts_drops_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool directory should be")
    sink = FlakySink(tmp_path / "tp.jsonl", down=True)
    pipeline = make(tmp_path, sink, queue_size=50, batch_size=10, spool_dir=blocker / "spool")
    with caplog.at_level(logging.WARNING, logger="personalize_mw"):
        for i in range(80):
            pipeline.put(record(f"/{i}"))
            if i % 10 == 9:
                pipeline.flush(5)
        assert "spool of jsonl:test.jsonl is not usable" in caplog.text
        stats = only(pipeline.stats())
        # Memory holds its bound plus the one batch that failed; the rest is dropped, counted.
        assert 50 <= stats["queued"] <= 60 and stats["dropped"] == 80 - stats["queued"]
        assert stats["spooled"] == 0
        pipeline.close(timeout=0.5)
    assert f"{stats['queued']} touchpoints not written at shutdown" in caplog.text
    assert only(pipeline.stats())["dropped"] == 80


# ---------------------------------------------------------------- shutdown and restarts


def test_close_with_the_sink_down_spools_and_the_next_start_replays(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    first = make(tmp_path, FlakySink(sink_path, down=True))
    for i in range(120):
        first.put(record(f"/{i}"))
    first.close()
    assert only(first.stats())["spooled"] == 120 and not sink_path.exists()

    second = make(tmp_path, JsonlSink(sink_path))  # a restarted server: same sink, same spool folder
    assert second.flush() is True
    second.close()
    assert [r["path"] for r in lines(sink_path)] == [f"/{i}" for i in range(120)]
    assert not list((tmp_path / "spool").glob("*.spool*"))


def test_close_with_a_hung_sink_spools_within_the_timeout(tmp_path: Path) -> None:
    release = threading.Event()

    class Hanging(JsonlSink):
        def write(self, records: list[dict[str, Any]]) -> None:
            release.wait()  # a collector that accepted the connection and never answers
            super().write(records)

    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, Hanging(sink_path), batch_size=10)
    for i in range(35):
        pipeline.put(record(f"/{i}"))
    pipeline.close(timeout=0.2)
    assert only(pipeline.stats())["spooled"] == 35  # the batch in flight too: at least once
    release.set()
    thread = pipeline.workers[0]._thread
    assert thread is not None
    thread.join(30)  # the write returns, the worker releases the spool file: the process "ends"

    restarted = make(tmp_path, JsonlSink(sink_path))
    assert restarted.flush() is True
    restarted.close()
    written = lines(sink_path)
    assert {r["path"] for r in written} == {f"/{i}" for i in range(35)}
    assert len({r["id"] for r in written}) == 35  # a batch may arrive twice, always with its ids


def test_a_crashed_process_spool_is_adopted_from_its_saved_offset(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    first = make(tmp_path, FlakySink(tmp_path / "tp.jsonl", down=True), batch_size=1)
    for i in range(4):
        first.put(record(f"/{i}"))
    first.flush()
    (spool_file,) = spool.glob("*.spool")
    assert wait_for(lambda: spool_file.read_bytes().count(b"\n") == 4)
    data = spool_file.read_bytes()
    # The first process is gone before its crash is staged: a worker still alive would
    # adopt the "orphan" on its next forced pass and keep it from the second process.
    first.close(timeout=0.5)
    # What a crash leaves: the first record delivered (offset past it), a torn half line at the end.
    first_line_end = data.index(b"\n") + 1
    crashed = spool_file.with_name(spool_file.name.replace(f".{os.getpid()}.", ".999999."))
    spool_file.unlink()
    crashed.write_bytes(data + b'{"id":"torn')
    (crashed.parent / (crashed.name + ".offset")).write_text(f"{first_line_end}\n")

    second = make(tmp_path, JsonlSink(tmp_path / "tp.jsonl"))
    assert second.flush() is True
    second.close()
    assert [r["path"] for r in lines(tmp_path / "tp.jsonl")] == ["/1", "/2", "/3"]
    assert not crashed.exists()


def test_a_live_process_spool_is_not_taken(tmp_path: Path) -> None:
    down = FlakySink(tmp_path / "a.jsonl", down=True)
    owner = make(tmp_path, down)
    owner.put(record("/mine"))
    owner.flush()
    other = make(tmp_path, JsonlSink(tmp_path / "b.jsonl"))
    assert other.flush() is True and not (tmp_path / "b.jsonl").exists()  # locked: left alone
    other.close()
    down.down = False
    owner.close()
    assert [r["path"] for r in lines(tmp_path / "a.jsonl")] == ["/mine"]


def _child_puts_one(pipeline: TouchpointPipeline) -> None:
    pipeline.put(record("/child"))
    pipeline.close()


def test_a_forked_child_delivers_its_own_records_not_the_parents(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, JsonlSink(sink_path))
    for i in range(3):
        pipeline.put(record(f"/parent/{i}"))
    child = multiprocessing.get_context("fork").Process(target=_child_puts_one, args=(pipeline,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    pipeline.close()
    assert sorted(r["path"] for r in lines(sink_path)) == ["/child", "/parent/0", "/parent/1", "/parent/2"]


# ---------------------------------------------------------------- stats


def test_module_stats_and_flush_cover_every_open_pipeline(tmp_path: Path) -> None:
    url = f"jsonl:{tmp_path}/stats.jsonl"
    pipeline = TouchpointPipeline([(url, JsonlSink(tmp_path / "stats.jsonl"))], flush_interval=SLOW)
    for i in range(3):
        pipeline.put(record(f"/{i}"))
    assert personalize_mw.stats()[url]["queued"] == 3
    personalize_mw.flush(5)  # its answer also covers other tests' pipelines: read the stats instead
    assert personalize_mw.stats()[url] == {"queued": 0, "sent": 3, "retried": 0, "spooled": 0, "dropped": 0,
                                           "enqueued": 3}
    pipeline.close()
    assert url not in personalize_mw.stats()


def test_a_password_in_a_sink_url_never_reaches_stats(tmp_path: Path) -> None:
    pipeline = TouchpointPipeline([("postgresql://app:s3cret@db/touchpoints", JsonlSink(tmp_path / "x.jsonl"))])
    assert list(pipeline.stats()) == ["postgresql://app:***@db/touchpoints"]
    pipeline.close()


def test_the_sink_benchmark_runs_and_counts_every_record() -> None:
    """``bench/sinks.py --quick`` end to end (no figure is asserted: performance lives in bench/)."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "bench/sinks.py", "--quick"], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split(" | ")[0].lstrip("| ") for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[1:7] == ["enqueue (request path), per record", "jsonl sustained", "sqlite sustained",
                         "postgresql sustained", "redis sustained", "http sustained"]
    # Then the encoders, side by side: a header and one row per batch size (100 in a quick run).
    assert rows[7:] == ["records a batch", "100"]
    assert "msgspec encode_lines | orjson, joined | json (C encoder), joined" in done.stdout


def test_pages_are_served_while_the_sink_is_down_and_the_spool_unwritable(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from personalize_mw import PersonalizeMiddleware
    from personalize_mw.config import load_config
    from personalize_mw.core.personalizer import Personalizer

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool directory should be")
    sink = FlakySink(tmp_path / "tp.jsonl", down=True)
    pipeline = TouchpointPipeline([("jsonl:tp.jsonl", sink)], queue_size=100, batch_size=10, flush_interval=0.001,
                                  max_retry_delay=0.001, spool_dir=blocker / "spool", shutdown_timeout=0.5)
    config = load_config({"secret_keys": ["delivery-test-secret-0123"], "sink": "jsonl:unused.jsonl",
                          "base_dir": str(tmp_path)})
    page = "<html><body><!-- personalize:hero -->Hi<!-- /personalize:hero --></body></html>"
    app = Starlette(routes=[Route("/", lambda request: HTMLResponse(page))])
    mw = PersonalizeMiddleware(app, personalizer=Personalizer(config, queue=pipeline))
    with TestClient(mw) as client:
        statuses = [client.get("/", headers={"cookie": "pmw_consent=analytics=1&personalization=1"}).status_code
                    for _ in range(400)]
    assert statuses == [200] * 400
    stats = only(pipeline.stats())
    assert stats["sent"] == 0 and stats["spooled"] == 0
    assert stats["dropped"] + stats["queued"] == 400 and stats["dropped"] >= 300  # counted, not lost silently
    pipeline.close()


def test_memory_spills_to_the_spool_while_one_write_hangs(tmp_path: Path) -> None:
    # A collector that accepts the connection and then says nothing: the worker waits in
    # write() while requests keep coming. Memory must go to disk, not be dropped at put().
    import threading as _threading
    import time as _time

    from personalize_mw.touchpoints.queue import TouchpointPipeline

    release = _threading.Event()
    written: list[str] = []

    class HangingOnce:
        def __init__(self) -> None:
            self.calls = 0

        def write(self, batch: list[dict]) -> None:
            self.calls += 1
            if self.calls == 1:
                release.wait(30)
            written.extend(r["id"] for r in batch)

        def close(self) -> None:
            pass

    pipeline = TouchpointPipeline([("hanging", HangingOnce())], queue_size=100, batch_size=10,
                                  flush_interval=0.05, spool_dir=tmp_path / "spool")
    put = 1000
    for i in range(put):
        accepted = pipeline.put({"id": None, "ts": None, "type": "pageview", "path": f"/{i}", "_t": 1.0})
        assert accepted, f"record {i} dropped at put() while the spool had room"
        if i % 50 == 49:
            _time.sleep(0.3)  # slower than the watcher's wake-up, as real traffic is
    [counts] = pipeline.stats().values()
    assert counts["dropped"] == 0 and counts["spooled"] > 0
    release.set()
    assert pipeline.flush(30)
    pipeline.close()
    assert len(written) == put and len(set(written)) == put


def test_a_record_that_utf8_cannot_hold_is_repaired_and_the_rest_delivered(tmp_path: Path) -> None:
    sink_path = tmp_path / "tp.jsonl"
    pipeline = make(tmp_path, JsonlSink(sink_path), batch_size=10)
    for path in ["/before", "/lone-\ud800-surrogate", "/after"]:
        pipeline.put(record(path))
    assert pipeline.flush(5) is True
    pipeline.close()
    assert [r["path"] for r in lines(sink_path)] == ["/before", "/lone-?-surrogate", "/after"]
    assert only(pipeline.stats())["dropped"] == 0
