"""A bounded in-memory queue that never blocks a request, drained by one thread.

The request path appends to a deque (tens of nanoseconds under the GIL); a
worker wakes every ``flush_interval`` seconds, or at once when a batch is full,
and hands batches to the sink. When the queue is full the record is dropped,
counted and logged, never waited for. ``close()`` flushes within a timeout; it
runs from the ASGI lifespan shutdown and from atexit, whichever comes first.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Any

from .record import finalize
from .sink import Sink

log = logging.getLogger("personalize_mw")

BATCH_SIZE = 100

# Every queue alive in this process, so flush_all() can reach them.
_LIVE: "weakref.WeakSet[TouchpointQueue]" = weakref.WeakSet()


def flush_all(timeout: float = 5.0) -> bool:
    """Write out every queue of this process; True if nothing is left queued."""
    return all([queue.flush(timeout) for queue in list(_LIVE)])


class TouchpointQueue:
    def __init__(self, sink: Sink, size: int = 10_000, flush_interval: float = 0.5,
                 shutdown_timeout: float = 5.0) -> None:
        self.sink = sink
        self.size = size
        self.flush_interval = flush_interval
        self.shutdown_timeout = shutdown_timeout
        self.enqueued = 0
        self.written = 0
        self.dropped = 0
        self.failed_writes = 0
        self._records: deque[dict[str, Any]] = deque()
        self._pending: list[dict[str, Any]] = []  # a batch the sink refused, retried first
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one writer at a time: worker or close()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._last_drop_log = 0.0
        atexit.register(self.close)
        _LIVE.add(self)
        # A forked worker (gunicorn --preload) inherits no threads: start anew.
        os.register_at_fork(after_in_child=self._after_fork)

    def put(self, record: dict[str, Any]) -> bool:
        records = self._records
        if len(records) >= self.size or self._closed:
            self._drop()
            return False
        records.append(record)
        self.enqueued += 1
        if self._thread is None:
            self._start()
        elif len(records) >= BATCH_SIZE:
            self._wake.set()
        return True

    def _drop(self) -> None:
        self.dropped += 1
        now = time.monotonic()
        if now - self._last_drop_log > 10:
            self._last_drop_log = now
            log.warning("personalize_mw: touchpoint queue full (%d); %d records dropped so far",
                        self.size, self.dropped)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                # Daemon so a hung sink cannot hold the process open; atexit flushes.
                self._thread = threading.Thread(target=self._run, name="personalize_mw-sink", daemon=True)
                self._thread.start()

    def _after_fork(self) -> None:
        self._thread = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._drain(deadline=None)

    def _drain(self, deadline: float | None) -> bool:
        """Write everything queued; False if the sink failed or time ran out."""
        with self._lock:
            while True:
                if not self._pending:
                    batch = self._take()
                    if not batch:
                        return True
                    self._pending = batch
                try:
                    self.sink.write(self._pending)
                except Exception:  # a sink failure must never reach the host app
                    self.failed_writes += 1
                    log.exception("personalize_mw: sink write failed; %d records kept for retry",
                                  len(self._pending))
                    return False
                self.written += len(self._pending)
                self._pending = []
                if deadline is not None and time.monotonic() > deadline:
                    return False

    def _take(self) -> list[dict[str, Any]]:
        records = self._records
        batch = []
        while records and len(batch) < BATCH_SIZE:
            batch.append(finalize(records.popleft()))
        return batch

    def flush(self, timeout: float | None = None) -> bool:
        """Write what is queued now, within ``timeout`` seconds; True if all was written."""
        timeout = self.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if not self._lock.acquire(timeout=max(timeout, 0.001)):
            return False
        self._lock.release()
        return self._drain(deadline) and not self._records

    def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        done = self.flush(timeout)
        self._closed = True
        self._stop.set()
        self._wake.set()
        if not done:
            lost = len(self._records) + len(self._pending)
            log.error("personalize_mw: %d touchpoints not written at shutdown", lost)
        try:
            self.sink.close()
        except Exception:
            log.exception("personalize_mw: closing the sink failed")

    def stats(self) -> dict[str, int]:
        return {"queued": len(self._records) + len(self._pending), "enqueued": self.enqueued,
                "written": self.written, "dropped": self.dropped, "failed_writes": self.failed_writes}
