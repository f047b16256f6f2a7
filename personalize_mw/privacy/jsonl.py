"""The privacy interface for JSON-lines files: the jsonl sink's files and the dead-letter files.

A file is changed by writing a filtered copy beside it and ``os.replace``-ing
it over the original, so a reader sees the old file or the new one, never
half of each. Writers keep appending meanwhile: the copy is made without a
lock, then, under an exclusive ``flock`` on the original (the jsonl sink
takes a shared one per batch), the lines appended since are filtered in too
and the copy replaces the file; a writer that waited finds the name points at
a new file and reopens it. The copy keeps the original's mode and owner.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..storage import Location
from ..touchpoints.encoding import from_json
from ..touchpoints.jsonl import same_file, sink_for
from .store import Person

_CHUNK = 1024 * 1024
_TS = b'"ts":"'
_IDENTIFY = b'"type":"identify"'

Drop = Callable[[bytes], bool]


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = from_json(line)
    except ValueError:
        return None  # a torn or foreign line: not ours to judge, kept
    return record if isinstance(record, dict) else None


def _lines(fd: int, start: int) -> Iterator[tuple[bytes, int]]:
    """Complete lines from ``start`` with the offset after each; a final unterminated piece too."""
    position, pending = start, b""
    while True:
        chunk = os.pread(fd, _CHUNK, position)
        if not chunk:
            break
        position += len(chunk)
        data = pending + chunk
        begin = 0
        end = data.find(b"\n")
        consumed = position - len(data)
        while end >= 0:
            yield data[begin:end + 1], consumed + end + 1
            begin = end + 1
            end = data.find(b"\n", begin)
        pending = data[begin:]
    if pending:
        yield pending, position  # no newline: a writer is mid-line, or one crashed there


def _copy(src: int, out: int, start: int, drop: Drop, final: bool) -> tuple[int, int, int]:
    """Filter lines from ``start`` into ``out``: (removed, kept, offset reached)."""
    removed = kept = 0
    offset = start
    buffer = bytearray()
    for line, after in _lines(src, start):
        if not line.endswith(b"\n") and not final:
            break  # finished under the lock, when nobody writes
        if line.endswith(b"\n") and drop(line):
            removed += 1
        else:
            buffer += line
            kept += 1
            if len(buffer) >= _CHUNK:
                _write_all(out, bytes(buffer))
                buffer.clear()
        offset = after
    if buffer:
        _write_all(out, bytes(buffer))
    return removed, kept, offset


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def rewrite(path: Path, drop: Drop, rotation_lock: Path | None = None) -> int:
    """Remove the lines ``drop`` picks, atomically; a file left with no line is deleted. Returns lines removed."""
    for _ in range(10):
        removed = _rewrite_once(path, drop, rotation_lock)
        if removed is not None:
            return removed
    raise RuntimeError(f"{path} was replaced again and again while it was rewritten")


def _rewrite_once(path: Path, drop: Drop, rotation_lock: Path | None) -> int | None:
    lock = None
    if rotation_lock is not None:  # the jsonl sink renames its file under this lock when it rotates
        lock = os.open(rotation_lock, os.O_WRONLY | os.O_CREAT, 0o640)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        try:
            src = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            return _filter_into_copy(src, path, drop)
        finally:
            os.close(src)
    finally:
        if lock is not None:
            os.close(lock)


def _filter_into_copy(src: int, path: Path, drop: Drop) -> int | None:
    info = os.fstat(src)
    temp = path.with_name(f".{path.name}.{os.getpid()}.rewrite")
    out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(out, info.st_mode & 0o7777)
        try:
            os.fchown(out, info.st_uid, info.st_gid)  # run as root for an app that runs as www-data
        except PermissionError:
            pass
        removed, kept, offset = _copy(src, out, 0, drop, final=False)
        fcntl.flock(src, fcntl.LOCK_EX)  # writers finish their batch; the next ones wait
        try:
            if not same_file(src, path):
                return None  # rotated or replaced meanwhile: start again on what the name is now
            more_removed, more_kept, _ = _copy(src, out, offset, drop, final=True)
            removed += more_removed
            kept += more_kept
            if removed == 0:
                return 0
            if kept == 0:
                os.unlink(path)
            else:
                os.fsync(out)
                os.replace(temp, path)
            _fsync_dir(path.parent)
            return removed
        finally:
            fcntl.flock(src, fcntl.LOCK_UN)
    finally:
        os.close(out)
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path, keep: Callable[[bytes], bool]) -> Iterator[dict[str, Any]]:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        for line, _ in _lines(fd, 0):
            if keep(line):
                record = _parse(line)
                if record is not None:
                    yield record
    finally:
        os.close(fd)


def older_than(before: str) -> Drop:
    """Lines whose ``ts`` sorts before ``before`` (RFC 3339 UTC strings sort as times do)."""
    limit = before.encode()

    def drop(line: bytes) -> bool:
        at = line.find(_TS)
        if at >= 0:  # the sinks write ts as the second field: no parse needed
            return line[at + len(_TS):at + len(_TS) + len(limit)] < limit
        record = _parse(line)
        return record is not None and isinstance(record.get("ts"), str) and record["ts"] < before

    return drop


# Up to this many ids, a substring test per id before parsing a line is cheaper than the parse;
# with more (an import's thousands of users), each line is parsed and its ids looked up in a set.
PREFILTER_IDS = 6


def belonging_to(person: Person) -> Drop:
    needles = person.needles()
    prefilter = len(needles) <= PREFILTER_IDS

    def drop(line: bytes) -> bool:
        if prefilter and not any(needle in line for needle in needles):
            return False
        record = _parse(line)
        return record is not None and person.owns(record)

    return drop


class JsonlFiles:
    """The privacy interface over a set of JSON-lines files (found again on every call)."""

    def __init__(self, label: str, files: Callable[[], Iterable[Path]],
                 rotation_lock: tuple[Path, Path] | None = None) -> None:
        self.label = label
        self._files = files
        self._rotation_lock = rotation_lock  # (the file that rotates, its lock file)

    def _lock_for(self, path: Path) -> Path | None:
        if self._rotation_lock is not None and path == self._rotation_lock[0]:
            return self._rotation_lock[1]
        return None

    def links(self, person: Person) -> set[tuple[str, str]]:
        found = set()
        owned = belonging_to(person)
        for path in self._files():
            for record in _read(path, lambda line: _IDENTIFY in line and owned(line)):
                if record.get("type") == "identify" and record.get("visitor") and record.get("user"):
                    found.add((record["visitor"], record["user"]))
        return found

    def export(self, person: Person) -> Iterator[dict[str, Any]]:
        owned = belonging_to(person)
        for path in self._files():
            yield from _read(path, owned)

    def forget(self, person: Person) -> int:
        drop = belonging_to(person)
        return sum(rewrite(path, drop, self._lock_for(path)) for path in list(self._files()))

    def prune(self, before: str) -> int:
        drop = older_than(before)
        return sum(rewrite(path, drop, self._lock_for(path)) for path in list(self._files()))


def store_for(location: Location) -> JsonlFiles:
    """The registry's entry point: the files a ``jsonl:`` sink has written, rotated ones included."""
    sink = sink_for(location)  # opens nothing: its file names and its rotation lock
    return JsonlFiles(location.label, sink.files, (sink.path, sink.rotation_lock))
