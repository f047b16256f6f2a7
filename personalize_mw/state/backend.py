"""The contract every state backend keeps: named bags of float counters.

A *key* names a bag (``co:/pricing``, ``bandit:hero``); a *field* names one
counter in it. That one shape serves both users: crowd co-occurrences (a bag
per page, a field per other page, top-k read) and bandit counts (a bag per
slot, read whole). Backends may raise any exception; :class:`StateStore`
turns failures into "no answer" so a page is always served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

Increment = tuple[str, str, float]  # key, field, amount


class Backend(Protocol):
    def incr(self, items: Sequence[Increment]) -> None:
        """Add each amount to its counter (created at 0); one round trip when the store allows."""

    def read(self, key: str) -> dict[str, float]:
        """Every counter of a bag (empty when the bag does not exist)."""

    def top(self, key: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` largest counters of a bag, largest first."""

    def close(self) -> None: ...
