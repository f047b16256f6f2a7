"""Journeys as flat arrays: the shape every attribution model reads.

A journey is one person's touches up to (and including the time of) a
conversion, or the touches after their last conversion that did not convert.
Touches are stored flat (``codes``) with ``offsets`` marking where each journey
starts, so a million journeys are a handful of numpy arrays, not a million
Python lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Journeys:
    labels: list[str]        # touch code -> name (a channel, a path, or "slot:variant")
    codes: np.ndarray        # int32, every touch of every journey, in journey order then time order
    offsets: np.ndarray      # int64, len = journeys + 1: journey j is codes[offsets[j]:offsets[j + 1]]
    hours: np.ndarray        # float64 per touch: hours before the conversion (before the last touch if none)
    converted: np.ndarray    # bool per journey
    value: np.ndarray        # float64 per journey: the conversion's value (0 when it has none or did not convert)

    def __post_init__(self) -> None:
        if len(self.offsets) != len(self.converted) + 1 or len(self.value) != len(self.converted):
            raise ValueError("offsets, converted and value disagree on the number of journeys")
        if len(self.codes) != len(self.hours) or (len(self.offsets) and self.offsets[-1] != len(self.codes)):
            raise ValueError("codes, hours and offsets disagree on the number of touches")

    @property
    def count(self) -> int:
        return len(self.converted)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def journey_of_touch(self) -> np.ndarray:
        """The journey index of every touch (int64; computed once, every model needs it)."""
        return self._journey_of_touch

    @cached_property
    def _journey_of_touch(self) -> np.ndarray:
        return np.repeat(np.arange(self.count, dtype=np.int64), self.lengths)

    @cached_property
    def touch_outcome(self) -> tuple[np.ndarray, np.ndarray]:
        """(1.0 if its journey converted else 0.0, its journey's value) for every touch."""
        jt = self._journey_of_touch
        return self.converted.astype(np.float64)[jt], self.value[jt]

    @cached_property
    def position(self) -> np.ndarray:
        """Each touch's index within its journey (int64)."""
        return np.arange(len(self.codes), dtype=np.int64) - self.offsets[:-1][self._journey_of_touch]

    def path(self, j: int) -> list[str]:
        return [self.labels[c] for c in self.codes[self.offsets[j]:self.offsets[j + 1]]]

    @classmethod
    def from_paths(cls, paths: Sequence[Sequence[str]], converted: Sequence[bool],
                   value: Sequence[float] | None = None,
                   hours: Sequence[Sequence[float]] | None = None) -> Journeys:
        """Build from Python lists (tests, small data); labels sorted by name."""
        labels = sorted({t for p in paths for t in p})
        index = {name: i for i, name in enumerate(labels)}
        codes = np.fromiter((index[t] for p in paths for t in p), dtype=np.int32)
        offsets = np.zeros(len(paths) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(p) for p in paths])
        flat_hours = (np.fromiter((h for hs in hours for h in hs), dtype=np.float64) if hours is not None
                      else np.zeros(len(codes)))
        conv = np.asarray(converted, dtype=bool)
        vals = np.asarray(value, dtype=np.float64) if value is not None else conv.astype(np.float64)
        return cls(labels, codes, offsets, flat_hours, conv, np.where(conv, vals, 0.0))
