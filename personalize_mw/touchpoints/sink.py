"""What a sink is, and how a sink URL from the config becomes one.

A sink persists batches of finalized records (``id`` and ``ts`` stamped). The
queue worker calls ``write`` from its own thread, one batch at a time, and
retries it when it raises, so a sink must make a repeated batch harmless
(the SQL sinks ignore a duplicate ``id``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .. import storage
from ..errors import PersonalizeError
from ..storage.schemes import Resolver

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


# Every scheme the config accepts for ``sink:`` (the registry's entries that serve sinks).
SCHEMES = storage.names("sink")
sink_label = storage.label
sink_key = storage.key


def check_url(url: str) -> str:
    """Raise ValueError unless ``url`` is a sink URL the registry can open (nothing is opened)."""
    return storage.check(url, "sink")


def open_sink(url: str, resolve: Resolver, http: HttpSinkConfig | None = None) -> Sink:
    """A sink from its URL in the config; ``resolve`` makes relative paths absolute.

    ``http`` is the config's ``http_sink`` (headers, timeout) for the http(s) sinks.
    """
    sink: Sink = storage.open_location(url, "sink", resolve, http)
    return sink
