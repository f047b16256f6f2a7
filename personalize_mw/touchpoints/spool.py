"""Where a sink's batches wait on disk while the sink is down, and where refused ones end.

Each process appends to its own spool file per sink,
``<key>.<pid>.<n>.spool`` (JSON lines, fsync per batch, bounded in bytes), and
holds an ``flock`` on it while it lives. Replay reads from a byte offset kept
in a ``.offset`` file beside it, so a crash during replay repeats at most the
last batch (the records keep their ids). A spool file nobody holds a lock on
belongs to a process that is gone: the next process to look adopts it and
replays it first, so a restart delivers what the previous run spooled.

Every method is called with :attr:`Spool.lock` held by the caller (the sink's
worker, or ``close()`` after the worker gave up); none is for the request path.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from .encoding import from_json, lines_of
from .jsonl import write_whole

log = logging.getLogger("personalize_mw")

_SEQUENCE = itertools.count()  # several pipelines in one process each get their own file
_READ_CHUNK = 256 * 1024


class _Segment:
    """One spool file: records between ``offset`` and ``size`` are waiting."""

    def __init__(self, path: Path, fd: int, offset: int, size: int, count: int, own: bool) -> None:
        self.path, self.fd, self.offset, self.size, self.count, self.own = path, fd, offset, size, count, own

    @property
    def offset_path(self) -> Path:
        return self.path.with_name(self.path.name + ".offset")

    def save_offset(self) -> None:
        # Not fsynced: a lost offset only replays records again, with their ids.
        fd = os.open(self.offset_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, b"%020d\n" % self.offset, 0)
        finally:
            os.close(fd)


def _read_offset(segment_path: Path, size: int) -> int:
    try:
        value = int(segment_path.with_name(segment_path.name + ".offset").read_bytes().strip() or b"0")
    except (OSError, ValueError):
        return 0
    return value if 0 <= value <= size else 0


def _count_lines(fd: int, start: int, size: int) -> tuple[int, int]:
    """(complete lines from ``start``, where the last complete line ends)."""
    count, end, position = 0, start, start
    while position < size:
        chunk = os.pread(fd, min(_READ_CHUNK, size - position), position)
        if not chunk:
            break
        count += chunk.count(b"\n")
        last = chunk.rfind(b"\n")
        if last >= 0:
            end = position + last + 1
        position += len(chunk)
    return count, end


class Spool:
    def __init__(self, directory: Path, key: str, max_bytes: int) -> None:
        self.directory = directory
        self.key = key
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self._segments: list[_Segment] = []  # oldest first; our own file, once made, is last
        self._own: _Segment | None = None
        self._peeked: tuple[_Segment, int, int] | None = None  # segment, bytes, lines
        self._left_at_close = 0
        self._name = re.compile(rf"^{re.escape(key)}\.\d+\.\d+\.spool$")

    @property
    def backlog(self) -> int:
        """Records waiting on disk."""
        return sum(s.count for s in self._segments) + self._left_at_close

    def used_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    # ------------------------------------------------------------ appending

    def append(self, records: list[dict[str, Any]]) -> bool:
        """Store a batch durably; False when the spool is full. Raises OSError when unwritable."""
        data = lines_of(records)
        if self.used_bytes() + len(data) > self.max_bytes:
            return False
        own = self._own or self._make_own()
        try:
            write_whole(own.fd, data)
            os.fsync(own.fd)
        except OSError:
            os.ftruncate(own.fd, own.size)  # no half batch left behind
            raise
        own.size += len(data)
        own.count += len(records)
        return True

    def _make_own(self) -> _Segment:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        while True:
            path = self.directory / f"{self.key}.{os.getpid()}.{next(_SEQUENCE)}.spool"
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                continue  # left by an earlier process with our pid: adopted by the scan instead
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while a scanner looks at the empty file
            segment = _Segment(path, fd, 0, 0, 0, own=True)
            self._own = segment
            self._segments.append(segment)
            return segment

    # ------------------------------------------------------------ adopting

    def adopt_orphans(self) -> int:
        """Take over spool files of this sink that no live process holds; records adopted."""
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return 0  # no spool directory yet: nothing was ever spooled here
        held = {s.path.name for s in self._segments}
        adopted = 0
        for name in names:
            if name in held or not self._name.match(name):
                continue
            segment = self._adopt(self.directory / name)
            if segment is not None:
                # Before our own file: a previous run's records are older than ours.
                self._segments.insert(len(self._segments) - (1 if self._own else 0), segment)
                adopted += segment.count
        return adopted

    def _adopt(self, path: Path) -> _Segment | None:
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            size = os.fstat(fd).st_size
            if size == 0:  # just created by a live process, or fully replayed: not ours to take
                os.close(fd)
                return None
            offset = _read_offset(path, size)
            count, end = _count_lines(fd, offset, size)
            if end < size:  # a crash mid-write left a partial line: it was never acknowledged
                os.ftruncate(fd, end)
                size = end
        except OSError:
            os.close(fd)  # locked by a live process, or unreadable
            return None
        log.info("personalize_mw: replaying %d spooled touchpoints from %s", count, path.name)
        return _Segment(path, fd, offset, size, count, own=False)

    # ------------------------------------------------------------ replaying

    def peek(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        """(up to ``limit`` of the oldest records, lines that were not JSON); see :meth:`commit`."""
        while self._segments:
            segment = self._segments[0]
            if segment.offset >= segment.size:
                self._finish(segment)
                continue
            records: list[dict[str, Any]] = []
            bad = 0
            position = segment.offset
            lines = 0
            want = _READ_CHUNK
            while lines < limit and position < segment.size:
                chunk = os.pread(segment.fd, min(want, segment.size - position), position)
                if b"\n" not in chunk:
                    if position + len(chunk) >= segment.size:  # a tail without its newline
                        position = segment.size
                        bad += 1
                        break
                    want *= 2  # one record longer than a chunk
                    continue
                for raw in chunk.split(b"\n")[:-1]:  # complete lines only
                    position += len(raw) + 1
                    lines += 1
                    try:
                        records.append(from_json(raw))
                    except ValueError:
                        bad += 1
                    if lines == limit:
                        break
            self._peeked = (segment, position - segment.offset, lines)
            return records, bad
        return [], 0

    def commit(self) -> None:
        """The records of the last :meth:`peek` are delivered: move past them."""
        if self._peeked is None:
            return
        segment, length, lines = self._peeked
        self._peeked = None
        segment.offset += length
        segment.count = max(0, segment.count - lines)
        if segment.offset >= segment.size:
            self._finish(segment)
        else:
            segment.save_offset()

    def _finish(self, segment: _Segment) -> None:
        """A fully replayed file: empty our own for reuse, delete an adopted one."""
        if segment.own:
            os.ftruncate(segment.fd, 0)
            segment.offset = segment.size = segment.count = 0
            if segment.offset_path.exists():
                segment.save_offset()
            return
        for path in (segment.offset_path, segment.path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        os.close(segment.fd)  # releases the lock; the file is gone already
        self._segments.remove(segment)

    # ------------------------------------------------------------ lifecycle

    def after_fork(self) -> None:
        """In a forked child: the parent's files stay the parent's."""
        for segment in self._segments:
            try:
                os.close(segment.fd)  # our copy only; the parent's descriptor keeps its lock
            except OSError:
                pass
        self._segments = []
        self._own = None
        self._peeked = None
        self.lock = threading.Lock()

    def close(self) -> None:
        self._left_at_close = self.backlog  # still reported by stats() after shutdown
        for segment in self._segments:
            if segment.own and segment.count == 0:
                for path in (segment.offset_path, segment.path):
                    try:
                        path.unlink()  # an empty file of ours is just clutter
                    except FileNotFoundError:
                        pass
            os.close(segment.fd)
        self._segments = []
        self._own = None


class DeadLetter:
    """Batches a sink refused for good (PermanentSinkError): kept for a person to look at."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def append(self, records: list[dict[str, Any]]) -> bool:
        """False when full; raises OSError when unwritable. Several processes share the file."""
        data = lines_of(records)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size + len(data) > self.max_bytes:
                return False
            write_whole(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
