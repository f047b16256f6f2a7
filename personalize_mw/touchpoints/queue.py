"""Delivery: every record to every sink, at least once, without ever blocking a request.

The request path appends to one bounded deque per sink (a list append under
the GIL, about a microsecond for the whole call). Each sink has a worker
thread (a thread serves WSGI and ASGI servers alike) that wakes every
``flush_interval_s`` or when three batches wait (a quarter of the queue if less), and writes batches
in order:

    the batch that failed last  ->  the spool on disk  ->  the memory queue

It does not wake for every full batch: each wake-up takes the GIL from the
request thread, and on a busy server one every ``batch_size`` records costs the
request thread more than the records do (docs/performance.md, "the sink's
wake-ups"). Woken by the backlog it writes full batches only and leaves the
rest to the timer; the timer, ``flush()`` and ``close()`` write everything.

A failed write is retried with exponential backoff and full jitter, capped at
``max_retry_delay_s``; while the sink is down, the worker moves batches from
memory to the sink's spool file (see :mod:`.spool`), which it replays in order
once a write succeeds again. A :class:`PermanentSinkError` is not retried: the
batch goes to a dead-letter file beside the spool. Records keep their ``id``
through all of this, so a repeat is recognisable (and ignored by SQL sinks).

A worker that has fallen behind (a saturated server starves its thread of
the GIL, and every system call gives the GIL up) writes what waits in larger
batches: up to ``sink.max_batch`` records at once for a sink that says it
takes them (the JSONL sink: one write a batch), and memory goes to the spool
as one write. When memory is full anyway, ``put()`` itself moves it to the
spool (backpressure on the request path, rare and bounded) rather than drop.
Only what fits neither memory nor spool is dropped: counted, logged at most
every ten seconds, and visible in :func:`stats`. ``close()`` (ASGI
lifespan shutdown, atexit) delivers within ``shutdown_timeout_s`` and spools
what is left.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..throttle import Throttle
from .record import LazyRecord, finalize_batch
from .sink import PermanentSinkError, Sink, open_sink, sink_key, sink_label
from .spool import DeadLetter, Spool

if TYPE_CHECKING:
    from ..config import Config, DeliveryConfig

log = logging.getLogger("personalize_mw")
T = TypeVar("T")
Queued = dict[str, Any] | LazyRecord  # a LazyRecord is built by the worker that takes it first

_FIRST_RETRY_S = 0.1  # the backoff's first step; it doubles up to max_retry_delay_s
_RESCAN_S = 60.0  # how often a worker looks for spool files of processes that are gone
_SPILL_BATCH = 10_000  # records per spool write when memory goes to disk

# Every open pipeline of this process, for flush(), stats(), atexit and fork.
_LIVE: set[TouchpointPipeline] = set()
_LIVE_LOCK = threading.Lock()


def backoff_step(attempts: int, cap: float) -> float:
    """The longest wait after ``attempts`` failures in a row: 0.1 s, doubling, at most ``cap``."""
    return min(cap, _FIRST_RETRY_S * 2 ** min(attempts - 1, 30))


class _Waiter:
    """A flush() caller waiting for the worker's next full pass."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class SinkWorker:
    """One sink: its bounded queue, its thread, its spool and its counters."""

    def __init__(self, label: str, sink: Sink, *, queue_size: int = 10_000, batch_size: int = 100,
                 flush_interval: float = 0.5, max_retry_delay: float = 60.0,
                 spool: Spool | None = None, dead_letter: DeadLetter | None = None,
                 stamp_lock: threading.Lock | None = None) -> None:
        self.label = label
        self.sink = sink
        self.queue_size = queue_size
        self.batch_size = batch_size
        # A sink that takes large batches cheaply says so; a worker that is behind uses it.
        self.max_batch = max(batch_size, int(getattr(sink, "max_batch", batch_size)))
        # The backlog that wakes the worker before its timer: at least one batch, well below
        # the half at which _pass moves memory to the spool, and a few batches at most. At a
        # wake the worker stamps and encodes what it takes in one stretch on the request loop's GIL
        # (about 1 µs a record): 2,500 records at a time were 2-3 ms that the requests then
        # in flight waited, the 99th percentile of bench/throughput.py (docs/performance.md).
        self.wake_at = max(batch_size, min(queue_size // 4, 3 * batch_size))
        self.flush_interval = flush_interval
        self.max_retry_delay = max_retry_delay
        self.spool = spool
        self.dead_letter = dead_letter
        # Records are shared between the sinks of a pipeline: stamped once, under this lock.
        self._stamp_lock = stamp_lock or threading.Lock()
        self.enqueued = self.sent = self.retried = self.dropped = 0
        self._records: deque[Queued] = deque()
        self._pending: list[dict[str, Any]] | None = None  # the batch whose write failed last
        self._inflight: list[dict[str, Any]] | None = None  # the batch being written now
        self._writing = False  # inside sink.write(), from memory or from the spool
        self._attempts = 0
        self._retry_at = 0.0  # monotonic time before which the sink is left alone
        self._spool_broken_until = 0.0
        self._next_scan = 0.0
        self._closed = False
        self._abandoned = False  # close() timed out and took the records over
        self._released = False  # spool and sink closed
        self._throttles: dict[str, Throttle] = {}  # one warning per reason every 10 s
        self._reset_threading()

    def _reset_threading(self) -> None:
        self._lock = threading.Lock()  # state moves between memory, batches and spool
        self._count_lock = threading.Lock()  # never held for I/O: put() may take it
        self._wake = threading.Event()
        self._waiters: list[_Waiter] = []
        self._thread: threading.Thread | None = None
        self._stop = False

    # ------------------------------------------------------------ the request path

    def put(self, record: Queued) -> bool:
        records = self._records
        if len(records) >= self.queue_size or self._closed:
            if self._closed or not self._spill_at_put():
                self._drop_at_put()
                return False
        records.append(record)
        self.enqueued += 1
        if self._thread is None:
            self._start()
        elif len(records) == self.wake_at:
            self._wake.set()
        return True

    def put_many(self, batch: Sequence[Queued]) -> bool:
        """:meth:`put` for each record of ``batch`` (a page's), in one call while they fit in memory."""
        records = self._records
        before = len(records)
        if before + len(batch) > self.queue_size or self._closed or self._thread is None:
            accepted = True
            for record in batch:
                accepted = self.put(record) and accepted
            return accepted
        records.extend(batch)
        self.enqueued += len(batch)
        if before < self.wake_at <= before + len(batch):
            self._wake.set()
        return True

    def _spill_at_put(self) -> bool:
        """Memory is full: move it to the spool from here, since the worker could not. True if room now."""
        if self.spool is None or time.monotonic() < self._spool_broken_until:
            return False
        self._spool_memory()
        return len(self._records) < self.queue_size

    def _drop_at_put(self) -> None:
        with self._count_lock:  # rare: the count must not lose increments between threads
            self.dropped += 1
        self._warn("full", "personalize_mw: touchpoint queue of %s full (%d in memory, spool %s); "
                   "%d records dropped so far", self.label, self.queue_size,
                   "unavailable" if self.spool is None else f"{self.spool.backlog} records", self.dropped)

    def _warn(self, reason: str, message: str, *args: Any) -> None:
        throttle = self._throttles.get(reason)
        if throttle is None:
            throttle = self._throttles[reason] = Throttle()
        if throttle.ready() is not None:
            log.warning(message, *args)

    # ------------------------------------------------------------ the thread

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._closed:
                # Daemon: a hung sink must not keep the process alive; close() spools instead.
                self._thread = threading.Thread(target=self._run, name=f"personalize_mw {self.label}",
                                                daemon=True)
                self._thread.start()
                if self.spool is not None:
                    threading.Thread(target=self._watch_overflow, name=f"personalize_mw {self.label} spill",
                                     daemon=True).start()

    def _run(self) -> None:
        while not self._stop:
            now = time.monotonic()
            timeout = self.flush_interval
            if self._retry_at > now:
                timeout = min(timeout, self._retry_at - now)
            backlog = self._wake.wait(timeout)  # False: the timer
            self._wake.clear()
            with self._lock:
                waiters, self._waiters = self._waiters, []
            try:
                self._pass(force=bool(waiters), whole=not backlog or bool(waiters))
            except Exception:  # a bug here must not end delivery for the process
                log.exception("personalize_mw: delivery to %s failed unexpectedly", self.label)
            for waiter in waiters:
                waiter.ok = self.settled()
                waiter.done.set()
        if self._abandoned:  # close() gave up on a hung write: release files now that it returned
            self._release()

    def _watch_overflow(self) -> None:
        """While one write hangs, memory still fills: move it to the spool before put() drops.

        The worker cannot do it itself while it waits on the sink. Only memory
        is moved here (the batch being written stays the worker's); the worker
        replays the spool before it takes from memory again, so order holds.
        """
        while not self._stop:
            time.sleep(min(self.flush_interval, 0.25))
            if self._writing and len(self._records) >= self.queue_size // 2:
                self._spool_memory()

    def settled(self) -> bool:
        """Nothing waits in memory, in a failed batch, or in the spool."""
        return (not self._records and self._pending is None and self._inflight is None
                and (self.spool is None or self.spool.backlog == 0))

    # ------------------------------------------------------------ one pass

    def _pass(self, force: bool, whole: bool = True) -> None:
        """Deliver in order what can be delivered now; ``force`` ignores the backoff (flush, close).

        ``whole`` False (woken by the backlog): full batches only, the rest waits for the timer.
        """
        if self._abandoned:
            return
        now = time.monotonic()
        spool = self.spool
        if spool is not None and (now >= self._next_scan or force):
            self._next_scan = now + _RESCAN_S
            with spool.lock:
                self._with_spool(spool.adopt_orphans)
        if now < self._retry_at and not force:
            self._spool_backlog()  # the sink is down: memory goes to disk, batch by batch
            return
        if self._pending is not None:
            if not self._send(self._pending):
                return
            self._pending = None
        if not self._replay():
            return
        while self._records and not self._abandoned and (whole or len(self._records) >= self.batch_size):
            if spool is not None and spool.backlog:  # spilled while a write hung: older, so first
                if not self._replay():
                    return
                continue
            if len(self._records) >= self.queue_size // 2 and self.spool is not None:
                # A sink that answers, but slower than records arrive: memory goes to disk
                # (and is replayed from there, in order) before the queue fills and drops.
                self._spool_backlog()
                if not self._records:  # all on disk now (else the spool is full: send from memory)
                    if not self._replay():
                        return
                    continue
            with self._lock:
                if self._abandoned:
                    return
                batch = self._take()
                self._inflight = batch
            if not self._send(batch):
                return

    def _take(self, limit: int | None = None) -> list[dict[str, Any]]:
        records = self._records
        if limit is None:  # behind: as much as the sink takes at once
            limit = self.batch_size if len(records) < 2 * self.batch_size else self.max_batch
        batch = [records.popleft() for _ in range(min(limit, len(records)))]
        with self._stamp_lock:
            return finalize_batch(batch)

    def _replay(self) -> bool:
        """Send the spool's batches, oldest first; False if the sink failed."""
        spool = self.spool
        while spool is not None and spool.backlog and not self._abandoned:
            with spool.lock:
                peeked = self._with_spool(lambda: spool.peek(self.max_batch))
            if peeked is None:
                return True  # unreadable now: memory goes first rather than nothing at all
            batch, bad = peeked
            if bad:
                self._count_dropped(bad, "personalize_mw: %d unreadable lines in the spool of %s skipped",
                                    bad, self.label)
            if batch and not self._send(batch, from_spool=True):
                return False
            with spool.lock:
                self._with_spool(spool.commit)
            if not batch and not bad:
                return True  # the counts were off; nothing more to read
            if len(self._records) >= self.queue_size // 2:
                self._spool_backlog()  # keep memory free while the backlog drains
        return True

    def _send(self, batch: list[dict[str, Any]], from_spool: bool = False) -> bool:
        """Write one batch; True when it is done with (sent, or dead-lettered)."""
        self._writing = True
        try:
            self.sink.write(batch)
        except PermanentSinkError as exc:
            if len(batch) > self.batch_size:  # a catch-up batch: bury only the configured batch that fails
                return self._send_in_pieces(batch, from_spool)
            with self._lock:
                if self._abandoned:
                    return False
                self._inflight = None
                self._pending = None if batch is self._pending else self._pending
            self._bury(batch, exc)
            return True
        except Exception as exc:
            self._failed(batch, exc, from_spool)
            return False
        finally:
            self._writing = False
        with self._lock:
            if self._abandoned:
                return False
            self._inflight = None
            self.sent += len(batch)
            self._attempts = 0
            self._retry_at = 0.0
        return True

    def _send_in_pieces(self, batch: list[dict[str, Any]], from_spool: bool) -> bool:
        """A large batch refused for good, again in batches of the configured size."""
        size = self.batch_size
        written = 0
        for start in range(0, len(batch), size):
            piece = batch[start:start + size]
            try:
                self.sink.write(piece)
            except PermanentSinkError as exc:
                self._bury(piece, exc)
                continue
            except Exception as exc:
                self._failed(batch[start:], exc, from_spool)
                return False
            written += len(piece)
        with self._lock:
            if self._abandoned:
                return False
            self._inflight = None
            self._pending = None if batch is self._pending else self._pending
            self.sent += written
        return True

    def _failed(self, batch: list[dict[str, Any]], exc: Exception, from_spool: bool) -> None:
        with self._lock:
            if self._abandoned:
                return
            if not from_spool:
                self._inflight = None
                self._pending = batch  # first in line next time
            self.retried += len(batch)
            self._attempts += 1
            # Full jitter: a random wait up to the exponential step, so restarts do not stampede.
            delay = random.uniform(0, backoff_step(self._attempts, self.max_retry_delay))
            # A server that said when to come back (HTTP Retry-After on 429/503) is not asked sooner.
            asked = getattr(exc, "retry_after", None)
            if isinstance(asked, (int, float)):
                delay = max(delay, min(float(asked), self.max_retry_delay))
            self._retry_at = time.monotonic() + delay
        self._warn("retry", "personalize_mw: writing %d touchpoints to %s failed (%s: %s); "
                   "retrying in %.1f s, spooling meanwhile", len(batch), self.label,
                   type(exc).__name__, exc, delay)
        self._spool_backlog()

    def _bury(self, batch: list[dict[str, Any]], exc: Exception) -> None:
        """A batch the sink refused for good: to the dead-letter file, counted as dropped."""
        where = "nowhere (no dead-letter file)"
        if self.dead_letter is not None:
            try:
                if self.dead_letter.append(batch):
                    where = str(self.dead_letter.path)
                else:
                    where = "nowhere (the dead-letter file is full)"
            except OSError as err:
                where = f"nowhere ({err})"
        self._count_dropped(len(batch), "personalize_mw: %s refused %d touchpoints for good (%s: %s); "
                            "written to %s", self.label, len(batch), type(exc).__name__, exc, where)

    def _count_dropped(self, count: int, message: str, *args: Any) -> None:
        with self._count_lock:
            self.dropped += count
        log.error(message, *args)

    # ------------------------------------------------------------ spooling

    def _with_spool(self, action: Callable[[], T]) -> T | None:
        """Run a spool operation; an unusable spool directory is logged, never raised."""
        try:
            return action()
        except OSError as exc:
            self._spool_broken_until = time.monotonic() + self.flush_interval
            self._warn("spool", "personalize_mw: the spool of %s is not usable (%s); "
                       "records stay in memory while there is room", self.label, exc)
            return None

    def _spool_memory(self) -> None:
        """Move what waits in memory to the spool, oldest first (not the batch in flight)."""
        spool = self.spool
        if spool is None or time.monotonic() < self._spool_broken_until:
            return
        with spool.lock, self._lock:
            self._memory_to_spool(spool)

    def _spool_backlog(self) -> None:
        """Move the failed batch, then everything in memory, to the spool (order kept)."""
        spool = self.spool
        if spool is None or time.monotonic() < self._spool_broken_until:
            return
        with spool.lock, self._lock:
            if self._abandoned:
                return
            if (pending := self._pending) is not None:
                if not self._with_spool(partial(spool.append, pending)):
                    return
                self._pending = None
            self._memory_to_spool(spool)

    def _memory_to_spool(self, spool: Spool) -> None:
        """Under both locks: memory to disk batch by batch; stops (keeping order) if the spool refuses."""
        while self._records and not self._abandoned:
            batch = self._take(_SPILL_BATCH)
            if not self._with_spool(partial(spool.append, batch)):
                self._records.extendleft(reversed(batch))  # back to the front, in order
                return

    # ------------------------------------------------------------ flush and close

    def request_flush(self) -> _Waiter:
        waiter = _Waiter()
        if self._thread is None:
            self._start()
        with self._lock:
            self._waiters.append(waiter)
        self._wake.set()
        if self._thread is None:  # closed: nobody will answer
            waiter.ok = self.settled()
            waiter.done.set()
        return waiter

    def close(self, deadline: float) -> None:
        """Stop the worker; what it did not deliver by ``deadline`` goes to the spool."""
        waiter = self.request_flush()
        waiter.done.wait(max(0.0, deadline - time.monotonic()))
        self._closed = True
        self._stop = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()) + 0.05)
        self._take_over()
        if thread is None or not thread.is_alive():
            self._release()
        # else: a write still hangs; the thread releases the spool and the sink when it returns

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        if self.spool is not None:
            with self.spool.lock:
                self._with_spool(self.spool.close)
        try:
            self.sink.close()
        except Exception:
            log.exception("personalize_mw: closing the sink %s failed", self.label)

    def _take_over(self) -> None:
        """Spool everything the worker has not delivered; count what not even that can hold."""
        with self._lock:
            self._abandoned = True
            left = [batch for batch in (self._inflight, self._pending) if batch]
            self._inflight = self._pending = None
            while self._records:
                left.append(self._take())
        unsaved = 0
        spool = self.spool
        for batch in left:
            saved = False
            if spool is not None:
                with spool.lock:
                    saved = bool(self._with_spool(partial(spool.append, batch)))
            if not saved:
                unsaved += len(batch)
        if unsaved:
            with self._count_lock:
                self.dropped += unsaved
            log.error("personalize_mw: %d touchpoints not written at shutdown to %s (no room in the spool)",
                      unsaved, self.label)

    def after_fork(self) -> None:
        """In a forked child: no thread yet, and the parent's queued records stay the parent's."""
        self._reset_threading()
        self._records.clear()
        self._pending = self._inflight = None
        if self.spool is not None:
            self.spool.after_fork()

    def stats(self) -> dict[str, int]:
        queued = len(self._records) + len(self._pending or ()) + len(self._inflight or ())
        return {"queued": queued, "sent": self.sent, "retried": self.retried,
                "spooled": self.spool.backlog if self.spool is not None else 0,
                "dropped": self.dropped, "enqueued": self.enqueued}


class TouchpointPipeline:
    """Fans each record out to one :class:`SinkWorker` per sink."""

    def __init__(self, sinks: Sequence[tuple[str, Sink]], *, queue_size: int = 10_000, batch_size: int = 100,
                 flush_interval: float = 0.5, max_retry_delay: float = 60.0, spool_dir: Path | None = None,
                 spool_max_bytes: int = 64 * 1024 * 1024, shutdown_timeout: float = 5.0) -> None:
        if not sinks:
            raise ValueError("a pipeline needs at least one sink")
        self.shutdown_timeout = shutdown_timeout
        stamp_lock = threading.Lock()
        self.workers: list[SinkWorker] = []
        for url, sink in sinks:
            key = sink_key(url)
            spool = dead = None
            if spool_dir is not None and spool_max_bytes > 0:
                spool = Spool(Path(spool_dir), key, spool_max_bytes)
                dead = DeadLetter(Path(spool_dir) / f"{key}.dead.jsonl", spool_max_bytes)
            self.workers.append(SinkWorker(
                sink_label(url), sink, queue_size=queue_size, batch_size=batch_size,
                flush_interval=flush_interval, max_retry_delay=max_retry_delay,
                spool=spool, dead_letter=dead, stamp_lock=stamp_lock))
        if len(self.workers) == 1:
            self.put = self.workers[0].put  # type: ignore[method-assign]  # one call less per record
            self.put_many = self.workers[0].put_many  # type: ignore[method-assign]
        self._closed = False
        with _LIVE_LOCK:
            _LIVE.add(self)

    def after_fork(self) -> None:
        stamp_lock = threading.Lock()  # the parent's may have been held at the fork
        for worker in self.workers:
            worker._stamp_lock = stamp_lock
            worker.after_fork()

    @classmethod
    def from_config(cls, config: Config) -> TouchpointPipeline:
        d: DeliveryConfig = config.delivery
        sinks = [(url, open_sink(url, config.resolve, config.http_sink)) for url in config.sinks]
        return cls(sinks, queue_size=d.queue_size, batch_size=d.batch_size, flush_interval=d.flush_interval_s,
                   max_retry_delay=d.max_retry_delay_s, spool_dir=config.spool_path(),
                   spool_max_bytes=d.spool_max_bytes, shutdown_timeout=d.shutdown_timeout_s)

    def put(self, record: Queued) -> bool:
        """Queue a record for every sink; False if any sink had to drop it."""
        accepted = True
        for worker in self.workers:
            accepted = worker.put(record) and accepted
        return accepted

    def put_many(self, batch: Sequence[Queued]) -> bool:
        """:meth:`put` for each record of ``batch``, a sink at a time."""
        accepted = True
        for worker in self.workers:
            accepted = worker.put_many(batch) and accepted
        return accepted

    @property
    def enqueued(self) -> int:
        return max(w.enqueued for w in self.workers)

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver what is queued now, within ``timeout`` seconds; True if every sink has it all."""
        deadline = time.monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        waiters = [w.request_flush() for w in self.workers]
        for waiter in waiters:
            waiter.done.wait(max(0.0, deadline - time.monotonic()))
        return all(w.done.is_set() and w.ok for w in waiters)

    def close(self, timeout: float | None = None) -> None:
        """Flush within ``timeout`` (default shutdown_timeout_s), spool the rest, stop the workers."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + (self.shutdown_timeout if timeout is None else timeout)
        for worker in self.workers:
            worker.request_flush()  # all sinks flush at once; each close() then waits its turn
        for worker in self.workers:
            worker.close(deadline)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def stats(self) -> dict[str, dict[str, int]]:
        return {w.label: w.stats() for w in self.workers}


def flush_all(timeout: float = 5.0) -> bool:
    """Deliver what every pipeline of this process has queued; True if nothing is left anywhere."""
    deadline = time.monotonic() + timeout
    with _LIVE_LOCK:
        pipelines = list(_LIVE)
    return all([p.flush(max(0.0, deadline - time.monotonic())) for p in pipelines])


def stats_all() -> dict[str, dict[str, int]]:
    """Per sink, summed over the pipelines of this process: queued, sent, retried, spooled, dropped."""
    with _LIVE_LOCK:
        pipelines = list(_LIVE)
    total: dict[str, dict[str, int]] = {}
    for pipeline in pipelines:
        for label, counts in pipeline.stats().items():
            into = total.setdefault(label, dict.fromkeys(counts, 0))
            for name, value in counts.items():
                into[name] = into.get(name, 0) + value
    return total


def _close_all() -> None:
    with _LIVE_LOCK:
        pipelines = list(_LIVE)
    for pipeline in pipelines:
        pipeline.close()


def _after_fork() -> None:
    global _LIVE_LOCK
    _LIVE_LOCK = threading.Lock()  # another thread may have held it at the fork
    for pipeline in list(_LIVE):
        pipeline.after_fork()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork)
