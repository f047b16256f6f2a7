"""The Redis Streams sink: one XADD per record, a batch in one MULTI/EXEC round trip.

    sink: redis://:password@cache.internal:6379/0/touchpoints?maxlen=1000000

The path is ``/[DB/]STREAM`` (DB defaults to 0, STREAM to ``touchpoints``);
``rediss://`` is Redis over TLS. ``maxlen`` caps the stream approximately
(``MAXLEN ~``, cheap for Redis: it trims whole nodes); 0 keeps everything.
Other query parameters go to redis-py (``socket_timeout=2``, say). Each entry
has two fields: ``id`` (the record's id, for consumers to drop a replayed
duplicate) and ``record`` (the record as JSON).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..storage import Location, locate
from .encoding import to_json_bytes as _to_json
from .sink import SinkError

if TYPE_CHECKING:
    from ..config import HttpSinkConfig

DEFAULT_MAXLEN = 1_000_000


class RedisStreamSink:
    def __init__(self, url: str | Location, timeout: float = 10.0) -> None:
        location = url if isinstance(url, Location) else locate(url, "sink")
        client_url = location.address
        assert location.stream is not None  # the registry gives a sink its stream, touchpoints by default
        self.stream = location.stream
        self.maxlen: int | None = location.options.get("maxlen", DEFAULT_MAXLEN)
        # One immediate retry on a new connection (a pooled one may predate a
        # restart); waiting longer is the queue's backoff's job, not the client's.
        self.client = redis.Redis.from_url(client_url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 1))

    def write(self, records: list[dict[str, Any]]) -> None:
        pipe = self.client.pipeline(transaction=True)
        command = pipe.execute_command  # XADD spelled out: xadd()'s argument checks cost per record
        head = ("XADD", self.stream, "MAXLEN", "~", self.maxlen, "*") if self.maxlen else ("XADD", self.stream, "*")
        for r in records:
            command(*head, "id", r["id"], "record", _to_json(r))
        try:
            pipe.execute()
        except redis.RedisError as exc:  # down, timed out, out of memory, read-only replica: all retried
            raise SinkError(f"redis: {exc}") from exc
        finally:
            pipe.reset()

    def close(self) -> None:
        self.client.close()


def sink_for(location: Location, http: HttpSinkConfig | None = None) -> RedisStreamSink:
    """The registry's entry point: ``redis://...[/DB]/STREAM[?maxlen=N]``."""
    return RedisStreamSink(location)
