"""Counters in Redis, one sorted set per bag: shared by every machine.

ZINCRBY adds, ZRANGE reads a bag whole or its top k, already ordered. Socket
and connect timeouts bound every call; redis-py's pool reconnects after the
server comes back and is safe across fork.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .backend import Increment

if TYPE_CHECKING:
    from ..storage import Location


class RedisBackend:
    def __init__(self, url: str, timeout_s: float = 0.05, prefix: str = "pmw:",
                 max_fields: int = 500) -> None:
        import redis  # optional dependency: pip install personalize_mw[redis]

        self.prefix = prefix
        self.max_fields = max_fields
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True,
            retry_on_timeout=False)

    def incr(self, items: Sequence[Increment]) -> None:
        pipe = self._client.pipeline(transaction=False)
        keys = set()
        for key, name, amount in items:
            pipe.zincrby(self.prefix + key, amount, name)
            keys.add(self.prefix + key)
        for key in keys:  # bounded bags: keep the largest max_fields
            pipe.zremrangebyrank(key, 0, -self.max_fields - 1)
        pipe.execute()

    def read(self, key: str) -> dict[str, float]:
        return dict(self._client.zrange(self.prefix + key, 0, -1, withscores=True))

    def top(self, key: str, k: int) -> list[tuple[str, float]]:
        return list(self._client.zrange(self.prefix + key, 0, k - 1, desc=True, withscores=True))

    def close(self) -> None:
        self._client.close()


def backend_for(location: Location, timeout_s: float) -> RedisBackend:
    """The registry's entry point: ``redis://``, ``rediss://`` or ``unix://`` (without ``timeout_ms``)."""
    return RedisBackend(location.address, timeout_s)
