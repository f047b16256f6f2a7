"""The embedded default sink: JSON lines appended to a local file.

Each batch of records is one ``os.write`` on an ``O_APPEND`` descriptor, so
the worker processes of one server (gunicorn, uvicorn --workers) can share a
file: with O_APPEND the kernel moves to the end and writes as one step (POSIX),
and Linux holds the file's inode lock for the whole write on a local
filesystem, so the lines of two processes never interleave. Only a short write
(a full disk, a signal) is finished by a second write that another process may
precede; it still ends on a whole line. Not for NFS, where O_APPEND is not atomic.

URL: ``jsonl:PATH`` (see :mod:`personalize_mw.storage.schemes`), optionally with one query parameter:

- ``?rotate=daily``: one file per UTC day of the records' ``ts``, named
  ``touchpoints.2026-11-24.jsonl`` for ``touchpoints.jsonl``. Every process
  derives the same name from the record, so no process ever renames a file.
- ``?max_bytes=100M`` (K, M, G or a plain number of bytes): once the file
  reaches the size, it is renamed to ``touchpoints.20261124T101530123456Z.jsonl``
  (the moment of rotation, so names sort in time order) and a new one begun.
  The rename happens under a lock file; the other processes notice the new
  inode before their next batch and reopen.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..storage import Location, parse_size
from .encoding import line_of, lines_of

if TYPE_CHECKING:
    from ..config import HttpSinkConfig

__all__ = ["JsonlSink", "parse_size", "same_file", "sink_for", "write_whole"]

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATED = re.compile(r"^\d{4}-\d{2}-\d{2}$|^\d{8}T\d{12}Z$")


def write_whole(fd: int, data: bytes) -> None:
    """One write; a short write (full disk, signal) is finished so the line ends."""
    written = os.write(fd, data)
    while written < len(data):
        written += os.write(fd, data[written:])


def _open_append(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)


class JsonlSink:
    # A worker that has fallen behind hands over this many at once: one write, one flock.
    max_batch = 5000

    def __init__(self, path: str | Path, rotate: str | None = None, max_bytes: int | None = None) -> None:
        if rotate not in (None, "daily"):
            raise ValueError(f"rotate must be 'daily', not {rotate!r}")
        if rotate and max_bytes:
            raise ValueError("choose one of rotate=daily and max_bytes")
        self.path = Path(path)
        self.rotate = rotate
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._fd_name: str | None = None  # the day an open daily file is for

    @property
    def rotation_lock(self) -> Path:
        """The lock file a size-rotating sink renames its file under (privacy rewrites take it too)."""
        return self.path.with_name(self.path.name + ".lock")

    # ------------------------------------------------------------ names

    def _named(self, tag: str) -> Path:
        return self.path.with_name(f"{self.path.stem}.{tag}{self.path.suffix}")

    def files(self) -> list[Path]:
        """Every file this sink has written: rotated or dated ones in time order, the current last."""
        found = []
        prefix, suffix = self.path.stem + ".", self.path.suffix
        if self.path.parent.is_dir():
            for entry in self.path.parent.iterdir():
                name = entry.name
                if name.startswith(prefix) and name.endswith(suffix) and \
                        _DATED.match(name[len(prefix):len(name) - len(suffix)]):
                    found.append(entry)
        found.sort()
        if self.path.exists():
            found.append(self.path)
        return found

    # ------------------------------------------------------------ writing

    def write(self, records: list[dict[str, Any]]) -> None:
        if self.rotate == "daily":
            for day, group in _by_day(records):
                self._write_lines(partial(self._daily_fd, day), self._named(day), lines_of(group))
        elif self.max_bytes:
            # In pieces that fill the file up to max_bytes: a large batch must not overshoot it.
            lines = [line_of(record) for record in records]
            start = 0
            while start < len(lines):
                end, room = start + 1, self.max_bytes - self._size() - len(lines[start])
                while end < len(lines) and len(lines[end]) <= room:
                    room -= len(lines[end])
                    end += 1
                self._write_lines(self._current_fd, self.path, b"".join(lines[start:end]))
                start = end
        else:
            self._write_lines(self._current_fd, self.path, lines_of(records))

    def _size(self) -> int:
        """Bytes in the current file as this process sees it (0 if not open yet)."""
        return os.fstat(self._fd).st_size if self._fd is not None else 0

    def _write_lines(self, open_fd: Callable[[], int], path: Path, data: bytes) -> None:
        # A shared flock per batch: `personalize-mw forget` and `prune` rewrite a file
        # under an exclusive one and replace it; a writer that waited reopens the new file.
        while True:
            fd = open_fd()
            fcntl.flock(fd, fcntl.LOCK_SH)
            if same_file(fd, path):
                break
            fcntl.flock(fd, fcntl.LOCK_UN)
            self.close()
        try:
            write_whole(fd, data)  # the batch in one write: see the module's docstring
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _daily_fd(self, day: str) -> int:
        if self._fd is None or self._fd_name != day:
            self.close()
            self._fd = _open_append(self._named(day))
            self._fd_name = day
        return self._fd

    def _current_fd(self) -> int:
        fd = self._fd
        if fd is None:
            fd = self._fd = _open_append(self.path)
        elif self.max_bytes:
            mine = os.fstat(fd)
            if mine.st_size >= self.max_bytes:
                self._rotate(mine)
                fd = self._fd = _open_append(self.path)
            elif not self._is_current(mine):  # another process rotated it
                self.close()
                fd = self._fd = _open_append(self.path)
        return fd

    def _is_current(self, mine: os.stat_result) -> bool:
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (named.st_ino, named.st_dev) == (mine.st_ino, mine.st_dev)

    def _rotate(self, mine: os.stat_result) -> None:
        """Rename the full file aside, once, whichever process gets here first."""
        lock = os.open(self.rotation_lock, os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._is_current(mine):  # nobody rotated it meanwhile
                # One clock reading for both parts: seconds from one reading and
                # microseconds from another could sort a later file first.
                micros = time.time_ns() // 1000
                while True:  # never onto an existing file: rename would replace it
                    stamp = (time.strftime("%Y%m%dT%H%M%S", time.gmtime(micros // 1_000_000))
                             + f"{micros % 1_000_000:06d}Z")
                    if not self._named(stamp).exists():
                        break
                    micros += 1
                os.rename(self.path, self._named(stamp))
        finally:
            os.close(lock)  # releases the flock
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._fd_name = None


def sink_for(location: Location, http: HttpSinkConfig | None = None) -> JsonlSink:
    """The registry's entry point: ``jsonl:PATH[?rotate=daily|max_bytes=SIZE]``."""
    assert location.path is not None
    return JsonlSink(location.path, rotate=location.options.get("rotate"),
                     max_bytes=location.options.get("max_bytes"))


def same_file(fd: int, path: Path) -> bool:
    """Does ``path`` still name the file open as ``fd`` (not replaced, renamed or deleted)?"""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (named.st_ino, named.st_dev) == (mine.st_ino, mine.st_dev)


def _by_day(records: list[dict[str, Any]]) -> Iterable[tuple[str, list[dict[str, Any]]]]:
    """Consecutive runs of records with the same UTC day in ``ts`` (2026-11-24T...)."""
    group: list[dict[str, Any]] = []
    day = ""  # set by the first record, before a group is yielded
    for record in records:
        this = str(record.get("ts") or "")[:10]
        if not _DAY.match(this):  # never a path from a malformed record
            this = time.strftime("%Y-%m-%d", time.gmtime())
        if this != day and group:
            yield day, group
            group = []
        day = this
        group.append(record)
    if group:
        yield day, group
