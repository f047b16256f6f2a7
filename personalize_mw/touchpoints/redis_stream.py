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

from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .encoding import to_json_bytes as _to_json
from .sink import SinkError

DEFAULT_STREAM = "touchpoints"
DEFAULT_MAXLEN = 1_000_000


def split_url(url: str) -> tuple[str, str, int | None]:
    """(the URL for redis-py, the stream name, the approximate MAXLEN or None)."""
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if len(segments) > 2 or (len(segments) == 2 and not segments[0].isdigit()):
        raise ValueError(f"redis sink {url!r}: the path is /[DB/]STREAM")
    db = segments[0] if len(segments) == 2 else "0"
    stream = segments[-1] if segments else DEFAULT_STREAM
    maxlen = DEFAULT_MAXLEN
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "maxlen":
            if not value.isdigit():
                raise ValueError(f"redis sink {url!r}: maxlen must be a whole number")
            maxlen = int(value)
        else:
            query.append((key, value))
    client_url = urlunsplit(parts._replace(path=f"/{db}", query=urlencode(query)))
    return client_url, stream, maxlen or None


class RedisStreamSink:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        client_url, self.stream, self.maxlen = split_url(url)
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
