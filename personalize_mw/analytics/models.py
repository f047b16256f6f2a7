"""Attribution models over :class:`~.journeys.Journeys`: who gets the credit for each conversion.

Every model returns an :class:`Attribution`: per touch label, the share of the
conversions and of the conversion value it is credited with. Only converting
journeys with at least one touch are credited, so each model's credits sum to
the same totals (Markov reads the non-converting journeys too, as evidence).

Heuristic models give each touch of a converting journey a weight that sums to 1
within the journey:

- ``first`` / ``last``: all to the first / last touch.
- ``linear``: 1/n to each touch occurrence.
- ``time_decay``: 0.5 ** (hours before the conversion / half-life), normalised.
- ``position``: one touch gets 1, two get 1/2 each, otherwise 0.4 to the first,
  0.4 to the last, 0.2 shared equally by the occurrences between them.

``markov`` and ``shapley`` are described on their functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .journeys import Journeys

HEURISTICS = ("first", "last", "linear", "time_decay", "position")
MODELS = (*HEURISTICS, "markov", "shapley")
DEFAULT_HALF_LIFE_HOURS = 168.0


@dataclass(frozen=True)
class Attribution:
    model: str
    labels: list[str]
    conversions: np.ndarray   # float64 per label: credited conversions
    value: np.ndarray         # float64 per label: credited conversion value

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {label: {"conversions": float(c), "value": float(v)}
                for label, c, v in zip(self.labels, self.conversions, self.value, strict=True)}


def attribute(journeys: Journeys, model: str, *, half_life_hours: float = DEFAULT_HALF_LIFE_HOURS,
              order: int = 1) -> Attribution:
    if model in HEURISTICS:
        weights = touch_weights(journeys, model, half_life_hours)
        return _credit(journeys, model, weights)
    if model == "markov":
        return markov(journeys, order=order)
    if model == "shapley":
        return shapley(journeys)
    raise ValueError(f"unknown model {model!r}; one of {', '.join(MODELS)}")


def attribute_all(journeys: Journeys, models: tuple[str, ...] = MODELS, *,
                  half_life_hours: float = DEFAULT_HALF_LIFE_HOURS, order: int = 1) -> list[Attribution]:
    return [attribute(journeys, m, half_life_hours=half_life_hours, order=order) for m in models]


def credited_totals(journeys: Journeys) -> tuple[float, float]:
    """(conversions, value) of the converting journeys that have a touch: what every model distributes."""
    mask = journeys.converted & (journeys.lengths > 0)
    return float(mask.sum()), float(journeys.value[mask].sum())


def touch_weights(journeys: Journeys, model: str, half_life_hours: float = DEFAULT_HALF_LIFE_HOURS) -> np.ndarray:
    """Each touch's share of its journey's conversion (sums to 1 per non-empty journey)."""
    jt = journeys.journey_of_touch()
    n = journeys.lengths[jt]
    pos = journeys.position
    if model == "first":
        return (pos == 0).astype(np.float64)
    if model == "last":
        return (pos == n - 1).astype(np.float64)
    if model == "linear":
        return 1.0 / n
    if model == "position":
        ends = (pos == 0) | (pos == n - 1)
        middle = 0.2 / np.maximum(n - 2, 1)
        return np.where(n == 1, 1.0, np.where(n == 2, 0.5, np.where(ends, 0.4, middle)))
    if model == "time_decay":
        if not half_life_hours > 0:
            raise ValueError("half_life_hours must be positive")
        raw = np.exp2(-journeys.hours / half_life_hours)
        return raw / np.bincount(jt, weights=raw, minlength=journeys.count)[jt]
    raise ValueError(f"{model!r} is not a heuristic model")


def _credit(journeys: Journeys, model: str, weights: np.ndarray) -> Attribution:
    won, worth = journeys.touch_outcome
    size = len(journeys.labels)
    conv = np.bincount(journeys.codes, weights=weights * won, minlength=size)
    value = np.bincount(journeys.codes, weights=weights * worth, minlength=size)
    return Attribution(model, list(journeys.labels), conv, value)


# ----------------------------------------------------------------- Markov

def _collapsed(journeys: Journeys) -> tuple[np.ndarray, np.ndarray]:
    """(codes, journey of each code) with consecutive repeats within a journey removed."""
    codes, jt = journeys.codes, journeys.journey_of_touch()
    keep = np.ones(len(codes), dtype=bool)
    keep[1:] = (codes[1:] != codes[:-1]) | (jt[1:] != jt[:-1])
    return codes[keep], jt[keep]


def markov(journeys: Journeys, order: int = 1) -> Attribution:
    """Removal effects of the absorbing Markov chain, solved exactly.

    States: ``start``, one per touch (order k: the last k touches, shorter at a
    journey's beginning), and the absorbing ``conversion`` and ``null``. Transition
    probabilities are the observed frequencies over all journeys (consecutive
    repeats collapsed). P(conversion) from ``start`` is x[0] with (I - Q) x = r,
    r the one-step conversion probabilities. Removing a touch sends every state
    that contains it to ``null``; its removal effect is 1 - P_removed / P, each
    solved exactly from one inverse of I - Q (see below), not one n×n solve per
    label (50 labels at order 2: 2,500 states, 40 s that way, 2 s this way). Credit is
    allocated globally as ChannelAttribution does: total × RE / ΣRE. For value,
    the same chain with each state's conversions weighted by their mean value.
    """
    if order < 1:
        raise ValueError("order must be at least 1")
    size = len(journeys.labels)
    conv_total, value_total = credited_totals(journeys)
    codes, jt = _collapsed(journeys)
    if len(codes) == 0 or conv_total == 0:
        return Attribution("markov", list(journeys.labels), np.zeros(size), np.zeros(size))
    base = size + 1
    if base ** order >= 2 ** 62:
        raise ValueError(f"order {order} with {size} touch labels is too many states")
    first = np.ones(len(codes), dtype=bool)
    first[1:] = jt[1:] != jt[:-1]
    # State key of touch i: its last `order` touches within the journey, as base-(size+1) digits.
    key = (codes.astype(np.int64) + 1)
    shifted = key.copy()
    same = ~first
    for step in range(1, order):
        shifted = np.concatenate(([0], shifted[:-1])) * same  # the touch `step` back, 0 past the start
        same = same & np.concatenate(([False], same[:-1]))
        key = key + shifted * base ** step
    if base ** order <= 1 << 22:  # dense keys: a lookup table instead of a 5M-element sort
        seen = np.bincount(key, minlength=base ** order) > 0
        keys = np.nonzero(seen)[0].astype(np.int64)
        state = (np.cumsum(seen) - 1)[key] + 1  # 0 is start
    else:
        keys, inverse = np.unique(key, return_inverse=True)
        state = inverse.astype(np.int64) + 1
    n = len(keys) + 1
    prev = np.concatenate(([0], state[:-1]))
    prev[first] = 0
    counts = np.bincount(prev * n + state, minlength=n * n).reshape(n, n).astype(np.float64)
    last = np.ones(len(codes), dtype=bool)
    last[:-1] = first[1:]
    ends, end_journey = state[last], jt[last]
    won = journeys.converted[end_journey]
    conv = np.bincount(ends[won], minlength=n).astype(np.float64)
    conv_value = np.bincount(ends[won], weights=journeys.value[end_journey][won], minlength=n)
    null = np.bincount(ends[~won], minlength=n).astype(np.float64)
    out = counts.sum(axis=1) + conv + null
    out[out == 0] = 1.0
    q = counts / out[:, None]
    r = conv / out
    rv = conv_value / out  # P(convert here) × mean value of those conversions
    # Which labels each state holds (digit d of a key is label d-1, 0 = none).
    holds = np.zeros((n, size), dtype=bool)
    rest = keys.copy()
    for _ in range(order):
        digit = rest % base
        rows = np.nonzero(digit)[0]
        holds[rows + 1, digit[rows] - 1] = True
        rest //= base
    # P(conversion) from start is x[0] with (I - Q) x = r. Removing a label turns the rows of
    # the states holding it into "go to null": a rank-|S| change. Through the fundamental
    # matrix F = (I - Q)^-1 (one inverse for all labels) the changed system is solved by its
    # S×S block: x'[0] = y[0] - F[0,S] F[S,S]^-1 y[S], with y = F r' and r' = r zeroed on S.
    fundamental = np.linalg.inv(np.eye(n) - q)
    rhs = np.stack([r, rv], axis=1)
    base_x = fundamental @ rhs

    def absorbed(mask: np.ndarray) -> np.ndarray:
        s = np.nonzero(mask)[0]
        if len(s) == 0:
            return base_x[0]
        block = fundamental[np.ix_(s, s)]
        y0 = base_x[0] - fundamental[0, s] @ rhs[s]
        ys = base_x[s] - block @ rhs[s]
        return y0 - fundamental[0, s] @ np.linalg.solve(block, ys)

    p_conv, p_value = (float(v) for v in base_x[0])
    effects = np.array([absorbed(holds[:, c]) for c in range(size)]).reshape(size, 2)
    re_conv = 1.0 - effects[:, 0] / p_conv if p_conv > 0 else np.zeros(size)
    re_value = 1.0 - effects[:, 1] / p_value if p_value > 0 else np.zeros(size)
    conv_credit = conv_total * re_conv / re_conv.sum() if re_conv.sum() > 0 else np.zeros(size)
    value_credit = value_total * re_value / re_value.sum() if re_value.sum() > 0 else np.zeros(size)
    return Attribution("markov", list(journeys.labels), conv_credit, value_credit)


# ----------------------------------------------------------------- Shapley

def shapley(journeys: Journeys) -> Attribution:
    """Exact Shapley values of the coalition game over touch labels.

    Characteristic function: v(S) = the conversions (or value) of the converting
    journeys whose set of distinct touches is a subset of S — what the coalition
    S brings in on its own. v is a sum of unanimity games, one per journey's touch
    set T with weight c(T), and the Shapley value of a unanimity game gives
    c(T)/|T| to each member of T; so each label's exact value is the sum, over
    the converting journeys it appears in, of the conversion divided by the
    number of distinct labels there. Exact for any number of labels, with no
    2^n enumeration (tests check it against the enumeration); credits sum to
    v(all) = the total.
    """
    size = len(journeys.labels)
    jt = journeys.journey_of_touch()
    won = journeys.converted[jt]
    pairs = np.unique(jt[won] * size + journeys.codes[won])
    pj, pc = pairs // size, pairs % size
    distinct = np.bincount(pj, minlength=journeys.count)
    share = 1.0 / distinct[pj]
    conv = np.bincount(pc, weights=share, minlength=size)
    value = np.bincount(pc, weights=share * journeys.value[pj], minlength=size)
    return Attribution("shapley", list(journeys.labels), conv, value)
