"""The privacy interface on each sink that holds records: links, export, forget, prune.

The same scenario runs on jsonl (plain and daily-rotated), sqlite and a real
PostgreSQL; the atomic rewrite of JSON-lines files is also tested against a
writer that keeps appending.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from personalize_mw.privacy.jsonl import JsonlFiles, belonging_to, older_than, rewrite
from personalize_mw.privacy.sqlite import SqliteStore
from personalize_mw.privacy.store import Person, Store
from personalize_mw.storage import open_location
from personalize_mw.touchpoints.jsonl import JsonlSink
from personalize_mw.touchpoints.postgresql import PostgresSink
from personalize_mw.touchpoints.record import finalize, format_ts, new_record
from personalize_mw.touchpoints.sqlite import SqliteSink
from servers import PostgresServer, postgres, pg  # noqa: F401  (fixtures)

UTM = dict.fromkeys(("source", "medium", "campaign", "term", "content"))
CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def rec(kind: str, visitor: str | None, t: float, user: str | None = None, **extra: Any) -> dict[str, Any]:
    record = new_record(kind, t, visitor=visitor, session="s-" + str(visitor), path="/p", referrer_host=None,
                        channel="direct", utm=UTM, consent=CONSENT, user=user, **extra)
    record["id"] = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{kind}/{visitor}/{t}"))  # the same on every call
    return finalize(record)


def scenario() -> list[dict[str, Any]]:
    """Alice on two devices (A, B), Bob on C, an anonymous visit; some old, some new."""
    return [
        rec("pageview", "dev-A", T0),
        rec("identify", "dev-A", T0 + 1, user="alice"),
        rec("pageview", "dev-B", T0 + 10 * DAY),
        rec("identify", "dev-B", T0 + 10 * DAY + 1, user="alice"),
        rec("event", "dev-B", T0 + 10 * DAY + 2, event="video_played", value=3, props={"id": "x"}),
        rec("pageview", "dev-C", T0 + 2 * DAY),
        rec("identify", "dev-C", T0 + 2 * DAY + 1, user="bob"),
        rec("pageview", None, T0 + 3 * DAY),
        rec("pageview", None, T0 + 20 * DAY),
    ]


ALICE = Person(frozenset({"dev-A", "dev-B"}), frozenset({"alice"}))


# ---------------------------------------------------------------- one store per sink kind


@pytest.fixture(params=["jsonl", "jsonl-daily", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    kind = request.param
    if kind.startswith("jsonl"):
        sink = JsonlSink(tmp_path / "tp.jsonl", rotate="daily" if kind == "jsonl-daily" else None)
        sink.write(scenario())
        sink.close()
        yield JsonlFiles(kind, sink.files, (sink.path, sink.path.with_name("tp.jsonl.lock")))
    elif kind == "sqlite":
        sqlite_sink = SqliteSink(tmp_path / "tp.db")
        sqlite_sink.write(scenario())
        yield SqliteStore(sqlite_sink, kind)
        sqlite_sink.close()
    else:
        server: PostgresServer = request.getfixturevalue("pg")
        table = f"privacy_{uuid.uuid4().hex[:10]}"
        pg_sink = PostgresSink(f"{server.url}?table={table}")
        pg_sink.write(scenario())
        pg_sink.close()
        yield open_location(f"{server.url}?table={table}", "privacy")
        server.query(f"DROP TABLE IF EXISTS {table}")


def everything(store: Store) -> list[dict[str, Any]]:
    everyone = Person(frozenset({"dev-A", "dev-B", "dev-C"}), frozenset())
    return sorted(store.export(everyone), key=lambda r: r["ts"])


def test_links_follow_identify_records(store: Store) -> None:
    assert store.links(Person(frozenset(), frozenset({"alice"}))) == {("dev-A", "alice"), ("dev-B", "alice")}
    assert store.links(Person(frozenset({"dev-C"}), frozenset())) == {("dev-C", "bob")}
    assert store.links(Person(frozenset({"nobody"}), frozenset({"nobody"}))) == set()


def test_export_gives_the_records_as_written(store: Store) -> None:
    written = {r["id"]: r for r in scenario()}
    exported = sorted(store.export(ALICE), key=lambda r: r["ts"])
    assert [r["type"] for r in exported] == ["pageview", "identify", "pageview", "identify", "event"]
    for record in exported:
        assert record == written[record["id"]]  # every field, nested ones included


def test_forget_deletes_the_person_and_nothing_else(store: Store) -> None:
    before = everything(store)
    assert store.forget(ALICE) == 5
    after = everything(store)
    assert [r["visitor"] for r in after] == ["dev-C", "dev-C"]
    assert list(store.export(ALICE)) == []
    assert store.forget(ALICE) == 0
    assert len(before) == 7


def test_prune_deletes_what_is_older_than_the_cutoff(store: Store) -> None:
    cutoff = format_ts(T0 + 5 * DAY)
    assert store.prune(cutoff) == 5  # A's two, C's two and the anonymous visit on day 3
    remaining = everything(store)
    assert all(r["ts"] >= cutoff for r in remaining)
    assert [r["visitor"] for r in remaining] == ["dev-B", "dev-B", "dev-B"]
    assert store.prune(cutoff) == 0


# ---------------------------------------------------------------- the atomic rewrite of JSON lines


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_rewrite_keeps_other_lines_byte_for_byte_and_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "tp.jsonl"
    sink = JsonlSink(path)
    sink.write(scenario())
    sink.close()
    os.chmod(path, 0o604)
    original = path.read_bytes().splitlines(keepends=True)
    assert rewrite(path, belonging_to(ALICE)) == 5
    assert path.read_bytes() == b"".join(line for line in original if b'"dev-A"' not in line and
                                         b'"dev-B"' not in line)
    assert stat.S_IMODE(path.stat().st_mode) == 0o604
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_rewrite_without_a_match_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "tp.jsonl"
    path.write_bytes(b'{"id":"1","ts":"2026-01-01T00:00:00.000Z","visitor":"x"}\n')
    inode = path.stat().st_ino
    assert rewrite(path, belonging_to(ALICE)) == 0
    assert path.stat().st_ino == inode


def test_rewrite_deletes_a_file_left_empty_and_keeps_torn_or_foreign_lines(tmp_path: Path) -> None:
    path = tmp_path / "tp.jsonl"
    old = rec("pageview", "dev-A", T0)
    path.write_bytes(json.dumps(old).encode() + b"\n")
    assert rewrite(path, older_than(format_ts(T0 + 1))) == 1
    assert not path.exists()
    path.write_bytes(json.dumps(old).encode() + b"\nnot json \"dev-A\"\n" + b'{"visitor":"dev-A","ts":"20')
    assert rewrite(path, belonging_to(ALICE)) == 1
    assert path.read_bytes() == b'not json "dev-A"\n{"visitor":"dev-A","ts":"20'


def test_rewrite_loses_nothing_a_concurrent_writer_appends(tmp_path: Path) -> None:
    path = tmp_path / "tp.jsonl"
    writer = JsonlSink(path)
    stop = threading.Event()
    written = [0]

    def append() -> None:
        n = 0
        while not stop.is_set() or n < 200:
            batch = [rec("pageview", "keep", T0 + n), rec("pageview", "dev-A", T0 + n)]
            writer.write(batch)
            written[0] += 1
            n += 1

    thread = threading.Thread(target=append)
    thread.start()
    removed = 0
    try:
        for _ in range(30):
            removed += rewrite(path, belonging_to(ALICE))
    finally:
        stop.set()
        thread.join()
    writer.close()
    removed += rewrite(path, belonging_to(ALICE))
    records = lines_of(path)  # every line parses: none torn
    assert [r["visitor"] for r in records] == ["keep"] * written[0]
    assert removed == written[0]
    assert [r["ts"] for r in records] == sorted(r["ts"] for r in records)


def test_a_writer_reopens_a_file_forget_replaced(tmp_path: Path) -> None:
    path = tmp_path / "tp.jsonl"
    sink = JsonlSink(path)
    sink.write([rec("pageview", "dev-A", T0)])
    sink.write([rec("pageview", "keep", T0)])
    assert rewrite(path, belonging_to(ALICE)) == 1
    sink.write([rec("pageview", "after", T0)])  # same sink object, fd opened before the rewrite
    sink.close()
    assert [r["visitor"] for r in lines_of(path)] == ["keep", "after"]


def test_forget_on_a_size_rotated_sink_covers_every_file(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "tp.jsonl", max_bytes=600)
    for record in scenario():
        sink.write([record])
    sink.close()
    store = JsonlFiles("rotated", sink.files, (sink.path, sink.path.with_name("tp.jsonl.lock")))
    assert len(sink.files()) > 2
    assert store.forget(ALICE) == 5
    left = [r for path in sink.files() for r in lines_of(path)]
    assert sorted(r["visitor"] or "-" for r in left) == ["-", "-", "dev-C", "dev-C"]
