"""What a sink is, and how a sink URL from the config becomes one.

A sink persists batches of finalized records (``id`` and ``ts`` stamped). The
queue worker calls ``write`` from its own thread, one batch at a time, and
retries it when it raises, so a sink must make a repeated batch harmless
(the SQL sinks ignore a duplicate ``id``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import PersonalizeError

if TYPE_CHECKING:
    from ..config import HttpSinkConfig


class SinkError(PersonalizeError):
    """A batch was not stored. ``retryable`` False means retrying cannot help (a 4xx, say)."""

    retryable = True
    retry_after: float | None = None  # seconds the server asked to wait (HTTP Retry-After)


class PermanentSinkError(SinkError):
    retryable = False


@runtime_checkable
class Sink(Protocol):
    def write(self, records: list[dict[str, Any]]) -> None:
        """Store the whole batch, or raise (SinkError or anything else: retried)."""

    def close(self) -> None:
        """Release connections and files; called once at shutdown."""


Resolver = Callable[[str], Path]

# Every scheme the config accepts; open_sink below has a branch for each.
SCHEMES = ("jsonl", "sqlite", "postgresql", "postgres", "redis", "rediss", "http", "https", "python")


def check_url(url: str) -> str:
    """Raise ValueError unless ``url`` names a known sink with something after the scheme."""
    scheme, colon, rest = url.partition(":")
    if not colon or scheme not in SCHEMES or not rest.strip("/?"):
        raise ValueError(f"unknown sink {url!r}: use one of " + ", ".join(f"'{s}:...'" for s in SCHEMES))
    return url


_PASSWORD = re.compile(r"(//[^/@:]*:)[^/@]*@")
_USERINFO = re.compile(r"//[^/@]*@")


def sink_label(url: str) -> str:
    """The URL as shown in stats and logs: any password (for http(s), the user too) as ***."""
    if url.startswith(("http:", "https:")):  # a collector's user name is its write key
        return _USERINFO.sub("//***@", url)
    return _PASSWORD.sub(r"\1***@", url)


def sink_key(url: str) -> str:
    """A file-name-safe name for a sink's spool: scheme and a hash (no path, no secret)."""
    scheme = url.partition(":")[0]
    return f"{re.sub(r'[^a-z0-9]', '', scheme.lower()) or 'sink'}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def open_sink(url: str, resolve: Resolver, http: HttpSinkConfig | None = None) -> Sink:
    """A sink from its URL in the config; ``resolve`` makes relative paths absolute.

    ``http`` is the config's ``http_sink`` (headers, timeout) for the http(s) sinks.
    """
    scheme, _, rest = url.partition(":")
    if scheme == "jsonl":
        from .jsonl import JsonlSink

        return JsonlSink.from_url(rest, resolve)
    if scheme == "sqlite":
        from .sqlite import SqliteSink

        return SqliteSink.from_url(rest, resolve)
    if scheme in ("postgresql", "postgres"):
        from .postgresql import PostgresSink

        return PostgresSink(url)
    if scheme in ("redis", "rediss"):
        from .redis_stream import RedisStreamSink

        return RedisStreamSink(url)
    if scheme in ("http", "https"):
        from .http import HttpSink

        if http is None:
            return HttpSink(url)
        return HttpSink(url, headers=http.headers, timeout=http.timeout_s)
    if scheme == "python":
        from .python_sink import load_python_sink

        return load_python_sink(rest)
    raise ValueError(f"unknown sink {url!r}")
