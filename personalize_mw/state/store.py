"""What strategies call: cached reads and buffered increments over a backend.

The request path never waits on the store once warm:

- ``add()`` only sums into an in-process buffer; a daemon thread writes the
  buffer every ``flush_interval_s`` in one call.
- ``read()`` / ``top()`` answer from a cache for ``cache_ttl_s``; an older
  answer is still served while the thread fetches a fresh one. Only the first
  read of a key in a process asks the store directly, bounded by its timeout.
- After a failure the store counts as down for ``retry_after_s``: reads of
  keys not cached (or cached more than ``max_stale_s`` ago) answer None (the strategy then shows the default), writes
  are dropped (counters are estimates, a gap costs little).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from cachetools import LRUCache

from .backend import Backend

log = logging.getLogger("personalize_mw.state")

_READ, _TOP = 0, 1


class StateStore:
    def __init__(self, backend: Backend, cache_ttl_s: float = 1.0, flush_interval_s: float = 0.5,
                 retry_after_s: float = 5.0, max_stale_s: float = 5.0, max_pending: int = 100_000,
                 cache_size: int = 10_000) -> None:
        self.backend = backend
        self.cache_ttl_s = cache_ttl_s
        self.max_stale_s = max(max_stale_s, cache_ttl_s)
        self.flush_interval_s = flush_interval_s
        self.retry_after_s = retry_after_s
        self.max_pending = max_pending
        self._cache: LRUCache[tuple[Any, ...], tuple[float, Any]] = LRUCache(maxsize=cache_size)
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], float] = {}
        self._stale: set[tuple[Any, ...]] = set()  # cache keys the thread should fetch again
        self._jobs: list[Callable[[], None]] = []  # work handed off the request path (bandit updates)
        self._down_until = 0.0
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.dropped = 0  # increments lost to a full buffer or a failed write
        self.failures = 0

    # ------------------------------------------------------------ request path

    def add(self, key: str, field: str, amount: float = 1.0) -> None:
        """Count later; never blocks on the store."""
        self._ensure_thread()
        with self._lock:
            pending = self._pending
            slot = (key, field)
            if slot in pending:
                pending[slot] += amount
            elif len(pending) < self.max_pending:
                pending[slot] = amount
            else:
                self.dropped += 1

    def healthy(self) -> bool:
        """False while the store counts as down (after a failed read, write or refresh)."""
        return time.monotonic() >= self._down_until

    def schedule(self, job: Callable[[], None]) -> None:
        """Run ``job`` on the store's thread soon: for work too slow for a request."""
        self._ensure_thread()
        with self._lock:
            self._jobs.append(job)
        self._wake.set()

    def read(self, key: str, now: float | None = None) -> dict[str, float] | None:
        """Every counter of a bag, at most ``cache_ttl_s`` old (a little more while refreshing); None when down."""
        return self._cached((_READ, key), lambda: self.backend.read(key), now)

    def top(self, key: str, k: int, now: float | None = None) -> list[tuple[str, float]] | None:
        return self._cached((_TOP, key, k), lambda: self.backend.top(key, k), now)

    def _cached(self, ckey: tuple[Any, ...], fetch: Callable[[], Any], now: float | None) -> Any:
        now = time.monotonic() if now is None else now
        found = self._cache.get(ckey)
        if found is not None and now - found[0] <= self.max_stale_s:
            if now - found[0] > self.cache_ttl_s:
                self._ensure_thread()
                with self._lock:
                    self._stale.add(ckey)
                self._wake.set()
            return found[1]
        if now < self._down_until:
            return None
        try:
            value = fetch()
        except Exception as exc:
            self._failed("read", exc)
            return None
        with self._lock:
            self._cache[ckey] = (now, value)
        return value

    # ------------------------------------------------------------ background

    def _ensure_thread(self) -> None:
        # Started lazily and again after a fork: a forked worker inherits no threads.
        if self._pid != os.getpid() and not self._closed:
            with self._lock:
                if self._pid != os.getpid():
                    self._pending.clear()  # the parent's buffer is the parent's to write
                    self._stale.clear()
                    self._jobs.clear()
                    self._wake = threading.Event()
                    self._thread = threading.Thread(target=self._run, name="personalize-state", daemon=True)
                    self._pid = os.getpid()
                    self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self.flush()
            self._refresh()
            self._run_jobs()

    def _run_jobs(self) -> None:
        with self._lock:
            jobs, self._jobs = self._jobs, []
        for job in jobs:
            try:
                job()
            except Exception:
                log.exception("personalize_mw: a state store job failed")

    def flush(self) -> bool:
        """Write the buffered increments now (the thread does this on its own); False if the store failed."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return True
        if time.monotonic() < self._down_until:
            self.dropped += len(pending)
            return False
        try:
            self.backend.incr([(key, name, amount) for (key, name), amount in pending.items()])
        except Exception as exc:
            self.dropped += len(pending)
            self._failed("write", exc)
            return False
        return True

    def _refresh(self) -> None:
        with self._lock:
            stale, self._stale = self._stale, set()
        for ckey in stale:
            if time.monotonic() < self._down_until:
                return  # keep serving what is cached until the store is back
            try:
                value = self.backend.read(ckey[1]) if ckey[0] == _READ else self.backend.top(ckey[1], ckey[2])
            except Exception as exc:
                self._failed("refresh", exc)
                return
            with self._lock:
                self._cache[ckey] = (time.monotonic(), value)

    def _failed(self, what: str, exc: Exception) -> None:
        self.failures += 1
        first = time.monotonic() >= self._down_until
        self._down_until = time.monotonic() + self.retry_after_s
        if first:
            log.warning("personalize_mw: state store %s failed (%s); defaults for %.0f s",
                        what, exc, self.retry_after_s)

    def invalidate(self) -> None:
        """Forget every cached answer (tests, simulations): the next read asks the store."""
        with self._lock:
            self._cache.clear()

    def close(self) -> None:
        """Write what is buffered, stop the thread, close the backend."""
        self.flush()
        self._closed = True
        self._wake.set()
        if self._thread is not None and self._pid == os.getpid():
            self._thread.join(timeout=2)
        self.backend.close()
