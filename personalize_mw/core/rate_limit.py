"""A fixed-window counter per key, bounded in memory, for the event endpoint.

Per process: with N workers a key may get up to N times the limit, which is
still a bound; what it must stop is one page in a loop, not a distributed attack.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cachetools import TTLCache


class RateLimiter:
    def __init__(self, limit: int, window_s: float = 60.0, max_keys: int = 100_000,
                 timer: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        # An entry lives one window from its first hit: the list is mutated, never re-set,
        # so its expiry does not move. Full: the entry closest to expiry goes first.
        self._counts: TTLCache[str, list[int]] = TTLCache(max_keys, window_s, timer=timer)
        self._lock = threading.Lock()  # WSGI servers call from many threads

    def allow(self, key: str) -> bool:
        with self._lock:
            entry = self._counts.get(key)
            if entry is None:
                self._counts[key] = [1]
                return True
            if entry[0] >= self.limit:
                return False
            entry[0] += 1
            return True
