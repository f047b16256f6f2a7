"""Several server processes, one JSONL file and one SQLite file: nothing torn, lost or doubled.

Also the JSONL file's rotation (daily by the records' own day, or by size),
which must keep working while other processes append to the same file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from personalize_mw.config import load_config
from personalize_mw.touchpoints.jsonl import JsonlSink, parse_size
from personalize_mw.touchpoints.queue import TouchpointPipeline
from personalize_mw.touchpoints.record import finalize_batch, new_record
from personalize_mw.touchpoints.sink import open_sink
from processes import run_workers

WORKERS = 4
PER_WORKER = 2500
CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
UTM = {"source": None, "medium": None, "campaign": None, "term": None, "content": None}


def record(path: str, props: dict[str, Any] | None = None, t: float | None = None) -> dict[str, Any]:
    return new_record("event" if props else "pageview", time.time() if t is None else t, visitor="v", session="s",
                      path=path, referrer_host=None, channel="direct", utm=dict(UTM), consent=CONSENT,
                      props=props)


def serve(base_dir: str, sink: list[str], worker: int) -> None:
    """One server process: its own pipeline from the shared config, records through put(), shutdown."""
    config = load_config({"secret_keys": ["multiprocess-secret-0123"], "base_dir": base_dir, "sink": sink,
                          "delivery": {"flush_interval_s": 0.01, "batch_size": 50}})
    pipeline = TouchpointPipeline.from_config(config)
    for i in range(PER_WORKER):
        # Every 500th record is 70 KB: larger than a pipe's atomic write, still one line.
        props = {"blob": "x" * 70_000} if i % 500 == 0 else None
        while not pipeline.put(record(f"/{worker}/{i}", props)):
            time.sleep(0.001)  # the test wants every record; a server would count the drop
    pipeline.close(timeout=60)
    counts = pipeline.stats()
    assert all(c["dropped"] == 0 and c["queued"] == 0 and c["spooled"] == 0 for c in counts.values()), counts


def parsed_lines(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        data = path.read_bytes()
        assert data.endswith(b"\n")
        for line in data.split(b"\n")[:-1]:
            out.append(json.loads(line))  # a torn or interleaved line fails here
    return out


def check_everything_once(records: list[dict[str, Any]]) -> None:
    assert len(records) == WORKERS * PER_WORKER
    assert len({r["id"] for r in records}) == len(records)
    assert sorted(r["path"] for r in records) == sorted(f"/{w}/{i}" for w in range(WORKERS) for i in range(PER_WORKER))
    for w in range(WORKERS):  # each process's records in its own order
        mine = [int(r["path"].split("/")[2]) for r in records if r["path"].startswith(f"/{w}/")]
        assert mine == sorted(mine)


def test_four_processes_share_one_jsonl_and_one_sqlite_file(tmp_path: Path) -> None:
    run_workers(serve, [(str(tmp_path), ["jsonl:tp.jsonl", "sqlite:tp.db"], w) for w in range(WORKERS)])

    from_jsonl = parsed_lines([tmp_path / "tp.jsonl"])
    check_everything_once(from_jsonl)
    assert sum(1 for r in from_jsonl if r["props"]) == WORKERS * PER_WORKER // 500

    conn = sqlite3.connect(tmp_path / "tp.db")
    conn.row_factory = sqlite3.Row
    rows = [dict(row) for row in conn.execute("SELECT id, path FROM touchpoints ORDER BY rowid")]
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    check_everything_once(rows)
    assert {r["id"] for r in rows} == {r["id"] for r in from_jsonl}


def test_four_processes_rotating_by_size_lose_and_tear_nothing(tmp_path: Path) -> None:
    run_workers(serve, [(str(tmp_path), ["jsonl:tp.jsonl?max_bytes=200K"], w) for w in range(WORKERS)])
    sink = open_sink("jsonl:tp.jsonl?max_bytes=200K", lambda p: tmp_path / p)
    assert isinstance(sink, JsonlSink)
    files = sink.files()
    assert len(files) > 5 and files[-1] == tmp_path / "tp.jsonl"
    check_everything_once(parsed_lines(files))


# ---------------------------------------------------------------- rotation in one process


def test_daily_files_follow_each_records_own_day(tmp_path: Path) -> None:
    sink = open_sink("jsonl:logs/tp.jsonl?rotate=daily", lambda p: tmp_path / p)
    assert isinstance(sink, JsonlSink)
    day = 86_400
    monday = 1_763_942_400.0  # 2025-11-24T00:00:00Z
    batch = finalize_batch([record("/a", t=monday - 1), record("/b", t=monday), record("/c", t=monday + 1),
                            record("/d", t=monday + day), record("/e", t=monday - 2)])
    sink.write(batch)
    sink.close()
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["tp.2025-11-23.jsonl", "tp.2025-11-24.jsonl",
                                                      "tp.2025-11-25.jsonl"]
    assert [r["path"] for r in parsed_lines([logs / "tp.2025-11-23.jsonl"])] == ["/a", "/e"]
    assert [r["path"] for r in parsed_lines([logs / "tp.2025-11-24.jsonl"])] == ["/b", "/c"]
    assert [p.name for p in sink.files()] == ["tp.2025-11-23.jsonl", "tp.2025-11-24.jsonl", "tp.2025-11-25.jsonl"]


def test_size_rotation_renames_aside_and_notices_another_process_rotated(tmp_path: Path) -> None:
    one = JsonlSink(tmp_path / "tp.jsonl", max_bytes=2_000)
    other = JsonlSink(tmp_path / "tp.jsonl", max_bytes=2_000)  # a second process's sink
    written = 0
    for n in range(12):
        batch = finalize_batch([record(f"/{n}/{i}") for i in range(3)])
        (one if n % 2 else other).write(batch)
        written += 3
    one.close()
    other.close()
    files = one.files()
    assert len(files) >= 3 and files[-1].name == "tp.jsonl"
    assert all(f.stat().st_size < 2_000 + 3 * 700 for f in files)  # one batch past the bound at most
    assert len(parsed_lines(files)) == written
    assert not (tmp_path / "tp.jsonl.unrelated").exists()


def test_jsonl_url_options(tmp_path: Path) -> None:
    resolve = lambda p: tmp_path / p  # noqa: E731
    assert open_sink("jsonl:a.jsonl?max_bytes=1M", resolve).max_bytes == 1024 * 1024  # type: ignore[attr-defined]
    assert parse_size("104857600") == 104_857_600 and parse_size("2G") == 2 * 1024**3 and parse_size("10MiB")
    for bad in ("jsonl:a.jsonl?rotate=hourly", "jsonl:a.jsonl?max_bytes=0", "jsonl:a.jsonl?keep=3",
                "jsonl:a.jsonl?rotate=daily&max_bytes=1M", "jsonl:?rotate=daily"):
        with pytest.raises(ValueError):
            open_sink(bad, resolve)
