"""Deterministic experiment assignment: no state, the same answer on every machine.

Every draw is a blake2b hash of (experiment salt, slot, purpose, visitor id)
read as a number in [0, 1):

- holdout: ``u(holdout) < holdout``. Raising the holdout only moves visitors
  *into* it (those whose u falls between the old and the new share).
- variants: weighted rendezvous hashing. Each variant scores
  ``-ln(u(variant name)) / weight`` and the lowest score wins; the chance of
  winning is exactly ``weight / sum(weights)``. A visitor's score for a
  variant depends only on that variant's name and weight, so changing one
  variant's weight, or adding or removing a variant, moves visitors only to or
  from *that* variant: everyone else keeps their arm. (Renaming a variant, or
  changing ``experiment:``, starts afresh: it is a new arm / experiment.)
"""

from __future__ import annotations

import math
from hashlib import blake2b
from typing import TYPE_CHECKING, Sequence

from .protocol import BuildContext, Decision, SlotSpec, VariantSpec

if TYPE_CHECKING:
    from ..core.context import RequestContext
    from ..core.visitor import Profile

_SCALE = 2.0 ** -64


def unit(visitor_id: str, slot: str, salt: str, purpose: str) -> float:
    """A uniform number in (0, 1), fixed for these four strings."""
    digest = blake2b(f"{salt}\x1f{slot}\x1f{purpose}\x1f{visitor_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) * _SCALE


def in_holdout(visitor_id: str, slot: str, salt: str, share: float) -> bool:
    return unit(visitor_id, slot, salt, "\x00holdout") < share


def choose(variants: Sequence[VariantSpec], visitor_id: str, slot: str, salt: str) -> VariantSpec:
    """The visitor's variant by weighted rendezvous hashing (see the module doc)."""
    best = variants[0]
    best_score = math.inf
    for variant in variants:
        if variant.weight <= 0:
            continue
        score = -math.log(unit(visitor_id, slot, salt, variant.variant)) / variant.weight
        if score < best_score:
            best, best_score = variant, score
    return best


class SplitStrategy:
    """``strategy: split``: the slot's weighted ``variants:``, one per visitor, sticky by hash.

    A visitor without an id cannot be assigned: no decision (the default shows,
    and the slot records the exposure as ``unenrolled``).
    """

    def __init__(self, spec: SlotSpec, build: BuildContext) -> None:
        if not spec.variants:
            raise ValueError("strategy split needs a 'variants:' list")
        self.variants = spec.variants
        self.salt = spec.experiment or spec.name
        self.decisions = {v.variant: v.decision() for v in spec.variants}

    def decide(self, slot: str, visitor: "Profile | None", ctx: "RequestContext", now: float) -> Decision | None:
        if visitor is None:
            return None
        return self.decisions[choose(self.variants, visitor.visitor_id, slot, self.salt).variant]

    def preview(self, variant: str | None, segment: str | None) -> Decision | None:
        return self.decisions.get(variant) if variant is not None else None
