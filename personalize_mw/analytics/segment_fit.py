"""Segments found in visitor features: latent classes, described by a shallow decision tree.

1. A latent class model (a mixture of independent Bernoulli features, fitted
   by EM in stepmix) for every k from 2 to ``max_k``; k is the one with the
   lowest BIC among the models whose every class holds ``min_share`` of the
   visitors, so that groups too small to act on are merged by the model
   itself. Distinct feature rows are fitted with their visitor counts as
   weights: the same model as on every visitor, at the cost of the distinct rows.
   Device and country are not among its features (:attr:`.Feature.clusters`):
   as yes/no features, "mobile" and "desktop" depend on each other within every
   group, which a model of features independent within a group explains by
   splitting the groups by device. They are among the tree's, to describe a
   group with if it differs in them.
2. With ``small="drop"`` (or when no model qualifies), k is the lowest BIC's
   overall, and classes under ``min_share`` are left to the default experience
   (or merged into the nearest larger one by feature profile).
3. A decision tree of depth ``depth`` is fitted to the cluster labels; each
   leaf is a conjunction of feature tests, each segment the leaves that predict
   it. The tree's assignment, not the model's, is what the segments are: it is what
   the engine evaluates. A segment the tree leaves below ``min_share`` is merged
   the same way and the tree fitted again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from sklearn.tree import DecisionTreeClassifier
from stepmix.stepmix import StepMix

from .segment_defaults import DEPTH, MAX_K, MIN_SHARE
from .visitor_features import Feature, VisitorFeatures

REST = -1  # the label of visitors in no segment (dropped clusters)


@dataclass(frozen=True)
class Segment:
    label: int
    leaves: list[list[tuple[int, bool]]]   # per leaf: (feature index, value) along its path
    visitors: int
    conversions: float
    prevalence: npt.NDArray[np.float64]    # share of the segment with each feature


@dataclass
class Fit:
    features: list[Feature]
    k: int                                  # the number of groups the criterion chose
    bic: dict[int, float]
    segments: list[Segment]
    notes: list[str] = field(default_factory=list)   # merges and drops, in words
    agreement: float = 0.0                  # share of visitors whose segment is their cluster
    row_segment: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    overall: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    visitors: int = 0
    conversions: float = 0.0


def clustered(data: VisitorFeatures) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """What the latent class model reads: the distinct rows of every feature but those only describing
    (device, country), their visitors, and each row of ``data.rows``'s index among them."""
    columns = data.rows[:, [i for i, f in enumerate(data.features) if f.clusters]]
    rows, row_of = np.unique(columns, axis=0, return_inverse=True)
    row_of = row_of.reshape(-1).astype(np.int64)
    return rows, np.bincount(row_of, weights=data.weight, minlength=len(rows)).astype(np.float64), row_of


def _latent_classes(rows: npt.NDArray[np.uint8], weight: npt.NDArray[np.float64], k: int, seed: int) -> StepMix:
    return StepMix(n_components=k, measurement="bernoulli", n_init=5, random_state=seed, progress_bar=0,
                   verbose=0).fit(rows, sample_weight=weight)


def choose_k(data: VisitorFeatures, max_k: int, min_share: float, seed: int, small: str = "merge") -> tuple[
        int, dict[int, float], list[int], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(k, BIC per k, the k passed over for a class under ``min_share``, class per distinct row, class profiles).

    To merge small groups, k is the lowest BIC's among the models whose every
    class holds ``min_share`` of the visitors (the coarser model merges them);
    to drop them, or when no model qualifies, the lowest BIC's overall.
    """
    scores: dict[int, float] = {}
    passed: list[int] = []
    fits: dict[int, npt.NDArray[np.int64]] = {}
    visitors = float(data.weight.sum())
    rows, weight, row_of = clustered(data)
    for k in range(2, min(max_k, len(rows)) + 1):
        model = _latent_classes(rows, weight, k, seed)
        # BIC over visitors: score() is the visitor-weighted mean log-likelihood.
        loglik = float(model.score(rows, sample_weight=weight)) * visitors
        scores[k] = -2.0 * loglik + float(model.n_parameters) * float(np.log(visitors))
        fits[k] = np.asarray(model.predict(rows), dtype=np.int64)[row_of]
        if min(float(data.weight[fits[k] == c].sum()) for c in range(k)) < min_share * visitors:
            passed.append(k)
    if not scores:
        raise ValueError("the visitors are too alike to split into two groups")
    large = [k for k in scores if k not in passed] if small == "merge" else []
    k = min(large or list(scores), key=lambda k: scores[k])
    passed = [n for n in passed if scores[n] < scores[k]] if large else []  # the finer fits given up
    labels = fits[k]
    centres = np.stack([(data.rows[labels == c] * data.weight[labels == c, None]).sum(axis=0)
                        / max(1.0, float(data.weight[labels == c].sum())) for c in range(k)])
    return k, scores, passed, labels, centres


def _too_small(labels: npt.NDArray[np.int64], centres: npt.NDArray[np.float64], weight: npt.NDArray[np.float64],
               floor: float, small: str) -> tuple[int, int, float] | None:
    """(the smallest group under ``floor``, where it goes: the nearest large group or REST, its size), or None."""
    sizes = {int(c): float(weight[labels == c].sum()) for c in np.unique(labels) if c != REST}
    tiny = [c for c, n in sizes.items() if n < floor]
    if not tiny:
        return None
    victim = min(tiny, key=lambda c: sizes[c])
    large = [c for c, n in sizes.items() if n >= floor]
    if small == "drop" or not large:
        return victim, REST, sizes[victim]
    return victim, min(large, key=lambda c: float(np.sum((centres[c] - centres[victim]) ** 2))), sizes[victim]


def _merged(labels: npt.NDArray[np.int64], move: tuple[int, int, float], notes: list[str],
            why: str) -> npt.NDArray[np.int64]:
    victim, into, size = move
    out = np.where(labels == victim, into, labels)
    where = "dropped: they keep the default experience" if into == REST else "merged into the nearest larger one"
    notes.append(f"a group of {size:,.0f} visitors {why} was {where}")
    return out


def _leaves(tree: DecisionTreeClassifier) -> dict[int, list[tuple[int, bool]]]:
    """Leaf node -> the (feature, value) tests on its path (a split at 0.5: left is 0, right 1)."""
    t = tree.tree_
    paths: dict[int, list[tuple[int, bool]]] = {}
    stack: list[tuple[int, list[tuple[int, bool]]]] = [(0, [])]
    while stack:
        node, path = stack.pop()
        if t.children_left[node] == -1:
            paths[node] = path
            continue
        feature = int(t.feature[node])
        stack.append((int(t.children_left[node]), [*path, (feature, False)]))
        stack.append((int(t.children_right[node]), [*path, (feature, True)]))
    return paths


def fit_segments(data: VisitorFeatures, *, max_k: int = MAX_K, depth: int = DEPTH, min_share: float = MIN_SHARE,
                 small: Literal["merge", "drop"] = "merge", seed: int = 0) -> Fit:
    """Cluster, merge what is too small, and describe the clusters by rules (see the module doc)."""
    k, scores, passed, labels, centres = choose_k(data, max_k, min_share, seed, small)
    floor = min_share * data.count
    share = f"(below --min-share {min_share:.0%})"
    notes = [f"k = {', '.join(map(str, passed))}, with a lower BIC, passed over: each had a group {share}; "
             f"k = {k} merges them"] if passed else []
    while (move := _too_small(labels, centres, data.weight, floor, small)) is not None:
        labels = _merged(labels, move, notes, share)
    rows = data.rows.astype(np.float64)
    while True:  # each round removes a group: it ends
        tree = DecisionTreeClassifier(max_depth=depth, random_state=seed).fit(rows, labels, sample_weight=data.weight)
        predicted = np.asarray(tree.predict(rows), dtype=np.int64)
        move = _too_small(predicted, centres, data.weight, floor, small)
        if move is None:
            break
        labels = _merged(labels, move, notes, f"that rules of depth {depth} leave {share}")
    lost = sorted(set(np.unique(labels)) - set(np.unique(predicted)) - {REST})
    for c in lost:
        notes.append(f"a group of {data.weight[labels == c].sum():,.0f} visitors could not be told apart by rules "
                     f"of depth {depth}; they fall into the other segments")
    agreement = float(data.weight[predicted == labels].sum() / data.weight.sum())
    leaf_of = tree.apply(rows)
    overall = (data.rows * data.weight[:, None]).sum(axis=0) / data.weight.sum()
    segments = []
    for label in sorted(int(c) for c in np.unique(predicted) if c != REST):
        mine = predicted == label
        leaves = [path for node, path in _leaves(tree).items() if np.any(mine & (leaf_of == node))]
        visitors = float(data.weight[mine].sum())
        prevalence = (data.rows[mine] * data.weight[mine, None]).sum(axis=0) / visitors
        segments.append(Segment(label, [_simplified(p, data.features) for p in leaves], int(visitors),
                                float(data.conversions[mine].sum()), prevalence))
    segments.sort(key=lambda s: -s.visitors)
    return Fit(data.features, k, scores, segments, notes, agreement, predicted, overall, data.count,
               float(data.conversions.sum()))


def _simplified(path: list[tuple[int, bool]], features: list[Feature]) -> list[tuple[int, bool]]:
    """A leaf's tests without those another implies (read twice implies read; not read implies not twice;
    one channel, or stage, implies not the others)."""
    keep = list(dict.fromkeys(path))
    held = {features[i].exclusive for i, value in keep if value and features[i].exclusive}
    keep = [(i, value) for i, value in keep if value or features[i].exclusive not in held]
    by_name = {f.name: i for i, f in enumerate(features)}
    for index, value in list(keep):
        twice = by_name.get(features[index].name + " 2+ times")
        if twice is not None and value and (twice, True) in keep:
            keep.remove((index, value))  # "read twice" says "read"
        if twice is not None and not value and (twice, False) in keep:
            keep.remove((twice, False))  # "not read" says "not read twice"
    return keep
