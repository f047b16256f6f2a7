"""Sink throughput: what a record costs the request, and how many records per second each sink keeps up with.

    .venv/bin/python bench/sinks.py            # the figures in docs/performance.md ("Sinks")
    .venv/bin/python bench/sinks.py --quick    # a smoke run; figures not meaningful

Two measurements, one run:

- **enqueue**: ``pipeline.put(record)`` as the request path calls it, on
  records built beforehand (building them is the core's cost, measured by
  bench/overhead.py). Median of several rounds, nanoseconds per record.
- **sustained**: records per second through the whole pipeline, from the
  first ``put`` to the end of ``flush()``: stamping ids and timestamps,
  batching (the default 100), encoding and writing. The queue is sized to
  hold twice the run, so nothing is dropped or spilled to the disk spool
  (a drop would fail the run).

Adding a sink is one :class:`Row` in :data:`ROWS`: a name, a target in
records per second, and a function that opens the sink in a temporary
folder (or on a loopback server) and returns its URL, the sink, and how to
clean up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.dont_write_bytecode = True  # nothing written into bench/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personalize_mw.touchpoints.jsonl import JsonlSink  # noqa: E402
from personalize_mw.touchpoints.queue import TouchpointPipeline  # noqa: E402
from personalize_mw.touchpoints.record import new_record  # noqa: E402
from personalize_mw.touchpoints.sink import Sink  # noqa: E402
from personalize_mw.touchpoints.sqlite import SqliteSink  # noqa: E402

ENQUEUE_TARGET_NS = 2_000
CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}

Opened = tuple[str, Sink, Callable[[], None]]  # url, sink, cleanup


@dataclass
class Row:
    name: str
    target: int  # records per second
    open: Callable[[Path], Opened]  # a fresh, empty sink in this temporary folder
    # What the sink holds once the run is over (to check nothing was lost); None: not checked.
    count: Callable[[Sink], int] | None = None


def _jsonl(tmp: Path) -> Opened:
    sink = JsonlSink(tmp / "bench.jsonl")
    return "jsonl:bench.jsonl", sink, lambda: None


def _jsonl_count(sink: Sink) -> int:
    assert isinstance(sink, JsonlSink)
    with open(sink.path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def _sqlite(tmp: Path) -> Opened:
    sink = SqliteSink(tmp / "bench.db")
    return "sqlite:bench.db", sink, lambda: None


def _sqlite_count(sink: Sink) -> int:
    assert isinstance(sink, SqliteSink)
    return sink.connect().execute("SELECT count(*) FROM touchpoints").fetchone()[0]


ROWS: list[Row] = [
    Row("jsonl", 200_000, _jsonl, _jsonl_count),
    Row("sqlite", 100_000, _sqlite, _sqlite_count),
]


# ---------------------------------------------------------------- network sinks, against servers on loopback
# tests/servers.py starts each server in a temporary folder on a free port; the sink is
# opened as the config would open it, and the server removed afterwards.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def _postgresql(tmp: Path) -> Opened:
    from servers import PostgresServer

    from personalize_mw.touchpoints.postgresql import PostgresSink

    server = PostgresServer(durable=True)  # fsync on, as a production server
    server.start()
    url = f"{server.url}?table=bench"
    return url, PostgresSink(url), server.remove


def _postgresql_count(sink: Sink) -> int:
    import psycopg
    from psycopg import sql

    from personalize_mw.touchpoints.postgresql import PostgresSink

    assert isinstance(sink, PostgresSink)
    with psycopg.connect(sink.conninfo) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sink.table)).fetchone()[0]


def _redis(tmp: Path) -> Opened:
    from servers import RedisServer

    from personalize_mw.touchpoints.redis_stream import RedisStreamSink

    server = RedisServer()
    server.start()
    url = f"{server.url}/0/bench?maxlen=0"
    return url, RedisStreamSink(url), server.remove


def _redis_count(sink: Sink) -> int:
    from personalize_mw.touchpoints.redis_stream import RedisStreamSink

    assert isinstance(sink, RedisStreamSink)
    return int(sink.client.xlen(sink.stream))


_collector_of: dict[int, Any] = {}  # sink -> its collector, to count what arrived


def _http(tmp: Path) -> Opened:
    from servers import CollectorServer

    from personalize_mw.touchpoints.http import HttpSink

    server = CollectorServer()
    server.start()
    sink = HttpSink(server.url)
    _collector_of[id(sink)] = server
    return server.url, sink, server.remove


def _http_count(sink: Sink) -> int:
    return len(_collector_of.pop(id(sink)).messages())


ROWS += [
    Row("postgresql", 50_000, _postgresql, _postgresql_count),
    Row("redis", 50_000, _redis, _redis_count),
    Row("http", 20_000, _http, _http_count),
]


def records(count: int) -> list[dict[str, Any]]:
    """Records as a returning visitor's pageview makes them (UTM, consent, ids)."""
    utm = {"source": "linkedin", "medium": "paid_social", "campaign": "q4-launch", "term": None, "content": None}
    now = time.time()
    return [new_record("pageview", now + i * 1e-4, visitor="3f2a9c0e5b7d4e1f8a6c2b9d0e4f7a1c",
                       session="9c1e7b3a5d2f4e6a", path=f"/pricing/{i % 50}", referrer_host="www.linkedin.com",
                       channel="paid_social", utm=dict(utm), consent=CONSENT)
            for i in range(count)]


def measure_enqueue(count: int, rounds: int) -> float:
    """Median nanoseconds per put() into a one-sink pipeline whose worker is busy elsewhere."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            pipeline = TouchpointPipeline([("jsonl:enqueue.jsonl", JsonlSink(Path(tmp) / "enqueue.jsonl"))],
                                          queue_size=2 * count + 2, flush_interval=60, spool_dir=Path(tmp) / "spool")
            batch = records(count)
            put = pipeline.put
            started = time.perf_counter_ns()
            for record in batch:
                put(record)
            results.append((time.perf_counter_ns() - started) / count)
            pipeline.close(timeout=120)
            os.unlink(Path(tmp) / "enqueue.jsonl")
    return statistics.median(results)


def measure_sustained(row: Row, count: int) -> tuple[float, dict[str, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        url, sink, cleanup = row.open(Path(tmp))
        try:
            # Room for twice the run: the worker spills to the disk spool past half its queue.
            pipeline = TouchpointPipeline([(url, sink)], queue_size=2 * count + 2, flush_interval=0.5,
                                          spool_dir=Path(tmp) / "spool")
            batch = records(count)
            started = time.perf_counter()
            for record in batch:
                pipeline.put(record)
            done = pipeline.flush(timeout=600)
            elapsed = time.perf_counter() - started
            (stats,) = pipeline.stats().values()
            stored = row.count(sink) if row.count is not None else None
            pipeline.close(timeout=60)
        finally:
            cleanup()
    if not done or stats["sent"] != count or (stored is not None and stored != count):
        raise SystemExit(f"{row.name}: not every record arrived: {stats}, stored {stored}")
    return count / elapsed, stats


def measure_encoding(batch_sizes: tuple[int, ...], rounds: int) -> list[tuple[int, dict[str, float]]]:
    """µs per record to turn a batch of records into JSON lines, per library (median of rounds).

    Why the sinks use msgspec: the three ways of writing a batch, on the same records.
    """
    import json

    import msgspec
    import orjson

    from personalize_mw.touchpoints.record import finalize_batch

    stdlib = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode
    encoder = msgspec.json.Encoder(enc_hook=str)
    ways: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {
        "msgspec encode_lines": encoder.encode_lines,
        "orjson, joined": lambda b: b"".join([orjson.dumps(r, default=str, option=orjson.OPT_APPEND_NEWLINE)
                                              for r in b]),
        "json (C encoder), joined": lambda b: "".join([stdlib(r) + "\n" for r in b]).encode(),
    }
    results = []
    for size in batch_sizes:
        batch = finalize_batch(records(size))
        times: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(rounds):
            for name, encode in ways.items():
                repeats = max(1, 20_000 // size)
                started = time.perf_counter()
                for _ in range(repeats):
                    encode(batch)
                times[name].append((time.perf_counter() - started) / (repeats * size) * 1e6)
        results.append((size, {name: statistics.median(t) for name, t in times.items()}))
    return results


def revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: small counts, one round")
    parser.add_argument("--records", type=int, default=200_000, help="records per sink for the sustained rate")
    parser.add_argument("--only", nargs="*", help="sink rows to run (default: all)")
    args = parser.parse_args()
    count = 2_000 if args.quick else args.records
    rounds = 1 if args.quick else 7

    print(f"personalize_mw sinks at {revision()} — Python {platform.python_version()}, "
          f"{os.cpu_count()} cores (shared), {platform.machine()}")
    print()
    enqueue = measure_enqueue(min(count, 100_000), rounds)
    verdict = "PASS" if enqueue <= ENQUEUE_TARGET_NS else "MISS"
    print("| measurement | figure | target | |")
    print("|---|---:|---:|---|")
    print(f"| enqueue (request path), per record | {enqueue:,.0f} ns | ≤ {ENQUEUE_TARGET_NS:,} ns | {verdict} |")
    for row in ROWS:
        if args.only and row.name not in args.only:
            continue
        rate, _ = measure_sustained(row, count)
        verdict = "PASS" if rate >= row.target else "MISS"
        print(f"| {row.name} sustained | {rate:,.0f} records/s | ≥ {row.target:,} records/s | {verdict} |")
    print()
    print(f"{count:,} records per sink, batches of 100, every record counted in the sink afterwards.")
    print("\nEncoding a batch to JSON lines, µs per record (median of rounds; a worker that is behind "
          "writes up to 5,000 at once):\n")
    table = measure_encoding((100, 1_000, 5_000) if not args.quick else (100,), rounds)
    names = list(table[0][1])
    print("| records a batch | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for size, figures in table:
        print(f"| {size:,} | " + " | ".join(f"{figures[n]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
