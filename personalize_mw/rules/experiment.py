"""Deterministic experiment assignment: no state, the same answer on every machine.

Every draw is a blake2b hash of (experiment salt, slot, visitor id, purpose)
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
from collections.abc import Sequence
from hashlib import blake2b
from typing import TYPE_CHECKING

from .protocol import BuildContext, Decision, SlotSpec, VariantSpec

if TYPE_CHECKING:
    from ..core.context import RequestContext
    from ..core.visitor import Profile

_SCALE = 2.0 ** -64


def _draw(message: bytes) -> float:
    return (int.from_bytes(blake2b(message, digest_size=8).digest(), "big") + 0.5) * _SCALE


def unit(visitor_id: str, slot: str, salt: str, purpose: str) -> float:
    """A uniform number in (0, 1), fixed for these four strings."""
    return _draw(f"{salt}\x1f{slot}\x1f{visitor_id}\x1f{purpose}".encode())


def unit_id(visitor: Profile | None, by_account: bool) -> str | None:
    """What an experiment assigns by: the visitor id, or (``unit: account``) the account identify() gave."""
    if visitor is None:
        return None
    return visitor.account if by_account else visitor.visitor_id


def in_holdout(visitor_id: str, slot: str, salt: str, share: float) -> bool:
    return unit(visitor_id, slot, salt, "\x00holdout") < share


class Assigner:
    """Weighted rendezvous hashing over fixed variants, with the constant bytes prebuilt."""

    def __init__(self, variants: Sequence[VariantSpec], slot: str, salt: str) -> None:
        self.prefix = f"{salt}\x1f{slot}\x1f".encode()
        self.arms = [(v, f"\x1f{v.variant}".encode(), 1.0 / v.weight) for v in variants if v.weight > 0]
        self.first = variants[0]

    def choose(self, visitor_id: str) -> VariantSpec:
        base = self.prefix + visitor_id.encode()
        best, best_score = self.first, math.inf
        log = math.log
        for variant, suffix, inverse_weight in self.arms:
            digest = blake2b(base + suffix, digest_size=8).digest()
            score = -log((int.from_bytes(digest, "big") + 0.5) * _SCALE) * inverse_weight
            if score < best_score:
                best, best_score = variant, score
        return best


def choose(variants: Sequence[VariantSpec], visitor_id: str, slot: str, salt: str) -> VariantSpec:
    """The visitor's variant by weighted rendezvous hashing (see the module doc)."""
    return Assigner(variants, slot, salt).choose(visitor_id)


class SplitStrategy:
    """``strategy: split``: the slot's weighted ``variants:``, one per visitor, sticky by hash.

    A visitor without an id (with ``unit: account``, without an account) cannot be
    assigned: no decision (the default shows, and the slot records the exposure as
    ``unenrolled``).
    """

    def __init__(self, spec: SlotSpec, build: BuildContext) -> None:
        if not spec.variants:
            raise ValueError("strategy split needs a 'variants:' list")
        self.assigner = Assigner(spec.variants, spec.name, spec.experiment or spec.name)
        self.decisions = {v.variant: v.decision() for v in spec.variants}
        self.by_account = spec.config.unit == "account"

    def decide(self, slot: str, visitor: Profile | None, ctx: RequestContext, now: float) -> Decision | None:
        assign_by = unit_id(visitor, self.by_account)
        if assign_by is None:
            return None
        return self.decisions[self.assigner.choose(assign_by).variant]

    def preview(self, variant: str | None, segment: str | None) -> Decision | None:
        return self.decisions.get(variant) if variant is not None else None
