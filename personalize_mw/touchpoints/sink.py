"""What a sink is, and how a sink URL from the config becomes one.

A sink persists batches of finalized records (``id`` and ``ts`` stamped). The
queue worker calls ``write`` from its own thread, one batch at a time, and
retries it when it raises, so a sink must make a repeated batch harmless
(the SQL sinks ignore a duplicate ``id``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable


class SinkError(Exception):
    """A batch was not stored. ``retryable`` False means retrying cannot help (a 4xx, say)."""

    retryable = True


class PermanentSinkError(SinkError):
    retryable = False


@runtime_checkable
class Sink(Protocol):
    def write(self, records: list[dict[str, Any]]) -> None:
        """Store the whole batch, or raise (SinkError or anything else: retried)."""

    def close(self) -> None:
        """Release connections and files; called once at shutdown."""


Resolver = Callable[[str], Path]


def open_sink(url: str, resolve: Resolver) -> Sink:
    """A sink from its URL in the config; ``resolve`` makes relative paths absolute."""
    scheme, _, rest = url.partition(":")
    if scheme == "jsonl":
        from .jsonl import JsonlSink

        return JsonlSink(resolve(rest))
    raise ValueError(f"unknown sink {url!r}")
