"""The default backend: counters in this process, bounded in keys and fields."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cachetools import LRUCache

from .backend import Increment

if TYPE_CHECKING:
    from ..storage import Location


class MemoryBackend:
    """Per process: right for one worker, or for a site that does not need shared learning.

    The least recently touched bags go first when ``max_keys`` is reached; a bag
    past ``max_fields`` keeps its larger half (small co-occurrence counts are noise).
    """

    def __init__(self, max_keys: int = 50_000, max_fields: int = 500) -> None:
        self._bags: LRUCache[str, dict[str, float]] = LRUCache(maxsize=max_keys)
        self._max_fields = max_fields
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def incr(self, items: Sequence[Increment]) -> None:
        with self._lock:
            for key, name, amount in items:
                bag = self._bags.get(key)
                if bag is None:
                    bag = self._bags[key] = {}
                bag[name] = bag.get(name, 0.0) + amount
                if len(bag) > 2 * self._max_fields:
                    kept = heapq.nlargest(self._max_fields, bag.items(), key=lambda kv: kv[1])
                    self._bags[key] = dict(kept)

    def read(self, key: str) -> dict[str, float]:
        with self._lock:
            return dict(self._bags.get(key) or {})

    def top(self, key: str, k: int) -> list[tuple[str, float]]:
        with self._lock:
            bag = self._bags.get(key) or {}
            return heapq.nlargest(k, bag.items(), key=lambda kv: kv[1])

    def close(self) -> None:
        pass


def backend_for(location: Location, timeout_s: float) -> MemoryBackend:
    """The registry's entry point: ``memory`` (a timeout has nothing to bound here)."""
    return MemoryBackend()
