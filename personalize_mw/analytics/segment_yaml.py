"""Fitted segments as YAML the engine evaluates, with their evidence as comments."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from .segment_fit import Fit, Segment
from .visitor_features import Spec


@dataclass(frozen=True)
class Named:
    name: str
    segment: Segment
    condition: Spec


def _leaf_condition(fit: Fit, leaf: list[tuple[int, bool]]) -> Spec:
    tests = [fit.features[i].condition if value else fit.features[i].negation for i, value in leaf]
    return tests[0] if len(tests) == 1 else {"all": tests}


def condition_of(fit: Fit, segment: Segment) -> Spec:
    """The segment's leaves as one condition: a leaf's tests all hold, for any of its leaves."""
    leaves = [_leaf_condition(fit, leaf) for leaf in segment.leaves]
    return leaves[0] if len(leaves) == 1 else {"any": leaves}


def _apart(fit: Fit, segment: Segment, most: int = 3) -> list[tuple[str, float, float]]:
    """(feature, share in the segment, share of all) for the features it differs most in (10 points or more)."""
    gap = np.abs(segment.prevalence - fit.overall)
    order = [int(i) for i in np.argsort(-gap, kind="stable") if gap[i] >= 0.10][:most]
    return [(fit.features[i].name, float(segment.prevalence[i]), float(fit.overall[i])) for i in order]


def named_segments(fit: Fit, taken: Collection[str] = ()) -> list[Named]:
    """Each segment with a name from what sets it apart (``suggested_organic_blog``), unique and new."""
    used = set(taken)
    out = []
    for segment in fit.segments:
        over = [i for i in np.argsort(-(segment.prevalence - fit.overall), kind="stable")
                if segment.prevalence[i] - fit.overall[i] >= 0.10][:2]
        words = [re.sub(r"[^a-z0-9-]+", "-", fit.features[int(i)].slug.lower()).strip("-") for i in over]
        base = "_".join(["suggested", *[w for w in words if w]])[:60]
        name, n = base, 2
        while name in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name)
        out.append(Named(name, segment, condition_of(fit, segment)))
    return out


class _PlainDumper(yaml.SafeDumper):
    """Every condition written out in full: the config loader refuses YAML aliases (``&id001``/``*id001``)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _comment(text: str, indent: str = "") -> str:
    return "".join(f"{indent}# {line}".rstrip() + "\n" for line in text.splitlines())


def _rate(conversions: float, visitors: float) -> str:
    return f"{conversions / visitors:.1%}" if visitors else "n/a"


def render(fit: Fit, named: list[Named], header: list[str]) -> str:
    """The YAML document: a ``segments:`` mapping to merge into personalize.yaml, every figure a comment."""
    out = [_comment("\n".join(header))]
    out.append("segments:\n")
    for item in named:
        s = item.segment
        apart = "; ".join(f"{name} {mine:.0%} (all {every:.0%})" for name, mine, every in _apart(fit, s))
        out.append(_comment(f"{s.visitors:,} visitors ({s.visitors / fit.visitors:.1%}), converted "
                            f"{_rate(s.conversions, s.visitors)} (all {_rate(fit.conversions, fit.visitors)})\n"
                            f"sets it apart: {apart or 'nothing by 10 points or more'}", "  "))
        body: dict[str, Any] = {item.name: item.condition}
        dumped = yaml.dump(body, Dumper=_PlainDumper, default_flow_style=None, sort_keys=False, allow_unicode=True,
                           width=100)
        out.append("".join(f"  {line}\n" for line in dumped.splitlines()))
    return "".join(out)
