"""Seeded synthetic journeys with a known structure, for the cross-check tests and the benchmark.

Vectorised, so a million journeys take a fraction of a second. Each channel
has its own pull (some convert far more than others) so the models disagree
in ways a test can see; lengths are geometric, repeats happen, hours before
the conversion grow towards the start of a journey.
"""

from __future__ import annotations

import numpy as np

from .journeys import Journeys


def synthetic_journeys(count: int, channels: int = 8, seed: int = 0, mean_length: float = 5.0) -> Journeys:
    if count < 1 or channels < 1:
        raise ValueError("count and channels must be positive")
    rng = np.random.default_rng(seed)
    labels = [f"ch{i:02d}" for i in range(channels)]
    lengths = rng.geometric(1.0 / mean_length, size=count).astype(np.int64)
    offsets = np.zeros(count + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    popularity = rng.dirichlet(np.full(channels, 2.0))
    codes = rng.choice(channels, size=int(offsets[-1]), p=popularity).astype(np.int32)
    jt = np.repeat(np.arange(count), lengths)
    repeat = rng.random(len(codes)) < 0.15  # the same channel again, as revisits do
    starts = offsets[:-1][jt] == np.arange(len(codes))
    take = repeat & ~starts
    codes[take] = codes[np.nonzero(take)[0] - 1]
    pull = np.linspace(-2.5, 0.5, channels)[rng.permutation(channels)]
    score = np.bincount(jt, weights=pull[codes], minlength=count) / np.sqrt(lengths)
    converted = rng.random(count) < 1.0 / (1.0 + np.exp(-(score - 1.0)))
    value = np.where(converted, np.round(rng.gamma(2.0, 40.0, size=count), 2), 0.0)
    # Hours before the end: each step back adds an exponential gap (mean 30 h).
    gaps = rng.exponential(30.0, size=len(codes))
    pos_from_end = offsets[1:][jt] - 1 - np.arange(len(codes))
    back = np.cumsum(gaps[::-1])[::-1]  # sum of gaps from touch i to the end of the array
    end_of = back[offsets[1:][jt] - 1]
    hours = np.where(pos_from_end == 0, rng.exponential(2.0, size=len(codes)), back - end_of)
    return Journeys(labels, codes, offsets, hours, converted, value)


def grouped_paths(journeys: Journeys, sep: str = ">") -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(path strings, conversions, nulls, value) per distinct path: ChannelAttribution's input shape."""
    conv: dict[str, list[float]] = {}
    labels, codes, offsets = journeys.labels, journeys.codes.tolist(), journeys.offsets.tolist()
    for j in range(journeys.count):
        a, b = offsets[j], offsets[j + 1]
        if a == b:
            continue
        key = sep.join(labels[c] for c in codes[a:b])
        row = conv.setdefault(key, [0.0, 0.0, 0.0])
        if journeys.converted[j]:
            row[0] += 1
            row[2] += journeys.value[j]
        else:
            row[1] += 1
    paths = list(conv)
    table = np.array([conv[p] for p in paths]).reshape(-1, 3)
    return paths, table[:, 0], table[:, 1], table[:, 2]
