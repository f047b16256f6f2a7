"""One log line per reason every few seconds, however often the reason recurs.

A warning that a request can trigger (a regex timing out, a full queue) must not
let a visitor fill the log: the first one is logged, the next ones are counted
and reported with the next line that is let through.
"""

from __future__ import annotations

import time
from collections.abc import Callable

EVERY_S = 10.0


class Throttle:
    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._next = -float("inf")
        self._held = 0

    def ready(self) -> int | None:
        """The number held back since the last line if one may be logged now, else None (one more held).

        Unlocked on purpose: two threads may both log, or a count may be off by one; never more.
        """
        now = self._clock()
        if now < self._next:
            self._held += 1
            return None
        self._next = now + self.every_s
        held, self._held = self._held, 0
        return held
