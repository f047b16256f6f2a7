"""The state store: one contract over memory, SQLite and a real redis-server; failures answer None."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Iterator

import pytest

from personalize_mw.state import StateStore, check_state_url, open_store
from personalize_mw.state.memory import MemoryBackend
from personalize_mw.state.redis import RedisBackend
from personalize_mw.state.sqlite import SqliteBackend

from processes import run_workers
from servers import RedisServer, redis_server, redis_session  # noqa: F401  (fixtures)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    if request.param == "memory":
        made: object = MemoryBackend()
    elif request.param == "sqlite":
        made = SqliteBackend(tmp_path / "state.db")
    else:
        server = request.getfixturevalue("redis_server")
        made = RedisBackend(server.url, timeout_s=1.0)
    yield made
    made.close()  # type: ignore[attr-defined]


def test_backend_contract(backend) -> None:
    backend.incr([("co:/a", "/b", 1.0), ("co:/a", "/c", 3.0), ("co:/a", "/b", 1.5), ("views", "/a", 1.0)])
    assert backend.read("co:/a") == {"/b": 2.5, "/c": 3.0}
    assert backend.top("co:/a", 1) == [("/c", 3.0)]
    assert backend.top("co:/a", 5) == [("/c", 3.0), ("/b", 2.5)]
    assert backend.read("missing") == {}
    assert backend.top("missing", 3) == []


def test_memory_bags_stay_bounded() -> None:
    memory = MemoryBackend(max_keys=3, max_fields=10)
    memory.incr([(f"k{i}", "f", 1.0) for i in range(5)])
    assert memory.read("k0") == {} and memory.read("k4") == {"f": 1.0}
    memory.incr([("big", f"f{i}", float(i)) for i in range(25)])
    kept = memory.read("big")
    assert len(kept) <= 20 and "f24" in kept and "f0" not in kept


def test_store_buffers_writes_and_caches_reads(tmp_path: Path) -> None:
    store = StateStore(SqliteBackend(tmp_path / "s.db"), cache_ttl_s=60, flush_interval_s=60)
    try:
        store.add("bandit:x", "n:a")
        store.add("bandit:x", "n:a", 2)
        assert store.backend.read("bandit:x") == {}  # buffered, not yet written
        assert store.flush()
        assert store.read("bandit:x") == {"n:a": 3.0}
        store.add("bandit:x", "n:a")
        store.flush()
        assert store.read("bandit:x") == {"n:a": 3.0}  # within the TTL: the cached answer
        assert store.backend.read("bandit:x") == {"n:a": 4.0}
    finally:
        store.close()


def test_stale_reads_are_refreshed_in_the_background(tmp_path: Path) -> None:
    store = StateStore(MemoryBackend(), cache_ttl_s=0.05, flush_interval_s=0.02)
    try:
        assert store.top("views", 2) == []
        store.backend.incr([("views", "/a", 1.0)])
        deadline = time.monotonic() + 10
        while store.top("views", 2) != [("/a", 1.0)]:
            assert time.monotonic() < deadline, "the stale answer was never refreshed"
            time.sleep(0.02)
    finally:
        store.close()


def test_open_store_specs(tmp_path: Path) -> None:
    for bad in ("", "mysql://x", "sqlite:", "memory?timeout_ms=0", "sqlite:x.db?timeout_ms=soon"):
        with pytest.raises(ValueError):
            check_state_url(bad)
    store = open_store("sqlite:state/x.db", resolve=lambda p: tmp_path / p)
    try:
        assert isinstance(store.backend, SqliteBackend) and (tmp_path / "state" / "x.db").exists()
    finally:
        store.close()
    assert isinstance(open_store("memory").backend, MemoryBackend)
    timed = open_store(f"sqlite:{tmp_path / 't.db'}?timeout_ms=1500")
    assert isinstance(timed.backend, SqliteBackend) and timed.backend.timeout_s == 1.5
    assert timed.backend.path == str(tmp_path / "t.db")
    timed.close()


def test_redis_stopped_mid_run_answers_none_then_recovers(redis_server: RedisServer) -> None:
    store = StateStore(RedisBackend(redis_server.url, timeout_s=2.0), cache_ttl_s=0.01, max_stale_s=0.05,
                       retry_after_s=0.2, flush_interval_s=0.05)
    try:
        store.add("bandit:hero", "n:a", 5)
        assert store.flush()
        assert store.read("bandit:hero") == {"n:a": 5.0}
        redis_server.stop()
        time.sleep(0.1)  # past max_stale_s: the cached answer may no longer stand in
        assert store.read("bandit:hero") is None
        store.add("bandit:hero", "n:a")
        assert not store.flush()  # the write is dropped, not retried forever
        assert store.dropped >= 1
        redis_server.start()
        deadline = time.monotonic() + 10
        while store.read("bandit:hero") is None:  # the data went with the server (no persistence)
            assert time.monotonic() < deadline
            time.sleep(0.05)
        store.add("bandit:hero", "n:b")
        assert store.flush()
        assert store.backend.read("bandit:hero") == {"n:b": 1.0}
    finally:
        store.close()


def _worker(url: str, name: str, count: int) -> None:
    store = open_store(url, flush_interval_s=0.05)
    for _ in range(count):
        store.add("bandit:shared", f"n:{name}")
        store.add("bandit:shared", "n:all")
    store.close()  # writes what is buffered


def _two_workers(url: str) -> dict[str, float]:
    run_workers(_worker, [(url, name, 500) for name in ("p1", "p2")], timeout=60)
    reader = open_store(url)
    try:
        return reader.backend.read("bandit:shared")
    finally:
        reader.close()


# A generous timeout: this is about sharing, and the test machine may be loaded.
def test_two_processes_share_counts_through_sqlite(tmp_path: Path) -> None:
    assert _two_workers(f"sqlite:{tmp_path / 'shared.db'}?timeout_ms=5000") == {"n:p1": 500.0, "n:p2": 500.0, "n:all": 1000.0}


def test_two_processes_share_counts_through_redis(redis_server: RedisServer) -> None:
    assert _two_workers(f"{redis_server.url}/0?timeout_ms=5000") == {"n:p1": 500.0, "n:p2": 500.0, "n:all": 1000.0}


def _forked_child(store: StateStore) -> None:
    for _ in range(100):
        store.add("bandit:fork", "n:child")
    assert store.flush()  # its own connection, not the parent's
    assert store._thread is not None and store._thread.is_alive()  # its own writer thread


def test_a_forked_worker_gets_its_own_thread_and_connection(tmp_path: Path) -> None:
    # gunicorn --preload: the store is opened in the parent, used in forked workers.
    store = open_store(f"sqlite:{tmp_path / 'fork.db'}?timeout_ms=5000", flush_interval_s=0.05)
    try:
        store.add("bandit:fork", "n:parent")
        assert store.flush() and store.read("bandit:fork") == {"n:parent": 1.0}
        child = multiprocessing.get_context("fork").Process(target=_forked_child, args=(store,))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert store.backend.read("bandit:fork") == {"n:parent": 1.0, "n:child": 100.0}
    finally:
        store.close()
