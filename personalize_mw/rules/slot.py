"""One slot's decision: its chain of strategies, then its experiment (holdout).

The chain asks each strategy in order; the first decision wins. A slot with
an experiment (``holdout:``, ``variants:`` or ``experiment:``) then tags the
decision: visitors without an id are ``unenrolled``; a deterministic share of
the others (``holdout``) keep the default content and are recorded with
``arm: holdout`` and the variant they would have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, Problem
from . import conditions
from .conditions import merged_tests, request_key
from .experiment import in_holdout, unit_id
from .protocol import (
    HOLDOUT,
    TREATMENT,
    UNENROLLED,
    BuildContext,
    Decision,
    Explaining,
    Previewable,
    RuleSet,
    SlotSpec,
    VariantSpec,
)
from .registry import UnknownStrategy, resolve

if TYPE_CHECKING:
    from ..config import Slot, Variant
    from ..core.context import RequestContext
    from ..core.visitor import Profile

log = logging.getLogger("personalize_mw")

_SLOT_KEYS = frozenset({"strategy", "rules", "variants", "stages", "holdout", "experiment", "unit"})
_PER_VISITOR = frozenset({"bandit", "crowd"})  # they learn per visitor: no unit: account


_MEMO_MAX = 1024  # remembered decisions per slot, keyed by a few request fields: cleared when full
_UNSEEN = object()


def _reads(strategies: Sequence[RuleSet]) -> frozenset[str] | None:
    """The request fields a visitor without a profile is decided by, if a pure function of them.

    A strategy opts in with ``reads_without_profile`` (the request fields its decision
    reads when there is no profile, or None): the ``rules`` strategy does, when its
    conditions read no clock and no enricher (rules.conditions.Condition.reads).
    """
    fields: frozenset[str] = frozenset()
    for strategy in strategies:
        reads = getattr(strategy, "reads_without_profile", None)
        if reads is None:
            return None
        fields |= reads
    return fields


class SlotDecider:
    __slots__ = ("name", "chain", "names", "strategies", "experiment", "holdout", "variants", "_single", "_tags",
                 "by_account", "reads", "profile_tests", "_key", "_memo", "_failures")

    def __init__(self, name: str, chain: Sequence[tuple[str, RuleSet]], experiment: str | None,
                 holdout: float, variants: Sequence[VariantSpec] = (), by_account: bool = False) -> None:
        self.name = name
        self.by_account = by_account  # unit: account: an account, not a visitor, is what gets an arm
        self.variants = tuple(variants)
        self.names = tuple(n for n, _ in chain)
        self.chain = tuple(s.decide for _, s in chain)
        self.experiment = experiment
        self.holdout = holdout
        # The common case (one built-in strategy, no experiment) skips the loop and the tagging.
        self._single = self.chain[0] if len(self.chain) == 1 and experiment is None else None
        self.strategies = tuple(s for _, s in chain)
        # Tagged copies of the strategies' (mostly prebuilt) decisions, by identity: tagging
        # then costs a dict lookup, not a new object per request. Bounded: a strategy may
        # build a new decision per request (crowd).
        self._tags: dict[tuple[int, str], tuple[Decision, Decision]] = {}
        # Without a profile, a slot of pure strategies decides the same for the same request fields:
        # decided once per distinct values (most visitors under opt-in have no profile).
        self.reads = _reads(self.strategies)
        self._key = request_key(self.reads) if self.reads is not None else None
        # With a profile, the decision is a pure function of the request fields and what these tests
        # answer, unless an experiment tags it: its arm comes from the visitor's id.
        # A strategy opts in with ``profile_tests`` (the ``rules`` strategy does, as for ``reads_without_profile``).
        self.profile_tests = (merged_tests(getattr(s, "profile_tests", None) for s in self.strategies)
                              if self.reads is not None and experiment is None else None)
        self._memo: dict[Hashable, Decision | None] = {}
        self._failures = 0  # strategies that raised: a decision that saw one is not remembered

    @property
    def remembers(self) -> bool:
        """Whether a visitor without a profile is decided once per distinct request fields (see decide)."""
        return self._key is not None

    def remembered(self, ctx: RequestContext, decision: Decision | None) -> bool:
        """Whether ``decision``, made by :meth:`decide` for this request without a profile, is the one kept.

        Not merely whether one is kept: another thread may have kept its own for the same
        values while this request's strategy raised or its regex timed out.
        """
        return self._key is not None and self._memo.get(self._key(ctx), _UNSEEN) is decision

    def decided(self, ctx: RequestContext, visitor: Profile | None, now: float) -> tuple[Decision | None, bool]:
        """(the decision, whether it is the pure function of ``reads`` and, with a profile, of what
        ``profile_tests`` answer, that a page memo may keep): False after a failure or a regex timeout."""
        if visitor is None:
            decision = self.decide(ctx, None, now)
            return decision, self.remembered(ctx, decision)
        if self.profile_tests is None:
            return self.decide(ctx, visitor, now), False
        failures, timeouts = self._failures, conditions.regex_timeouts
        decision = self._decide(ctx, visitor, now)
        return decision, failures == self._failures and timeouts == conditions.regex_timeouts

    def decide(self, ctx: RequestContext, visitor: Profile | None, now: float) -> Decision | None:
        if visitor is None and self._key is not None:
            key = self._key(ctx)
            memo = self._memo
            found = memo.get(key, _UNSEEN)
            if found is not _UNSEEN:
                return found  # type: ignore[return-value]  # a Decision or None, stored below
            failures, timeouts = self._failures, conditions.regex_timeouts
            decision = self._decide(ctx, visitor, now)
            if failures == self._failures and timeouts == conditions.regex_timeouts:
                if len(memo) >= _MEMO_MAX:
                    memo.clear()
                memo[key] = decision
            return decision
        return self._decide(ctx, visitor, now)

    def _decide(self, ctx: RequestContext, visitor: Profile | None, now: float) -> Decision | None:
        single = self._single
        if single is not None:
            try:
                return single(self.name, visitor, ctx, now)
            except Exception:
                self._failures += 1
                log.exception("personalize_mw: strategy %s of slot %s failed; default kept", self.names[0], self.name)
                return None
        decision = None
        for index, decide in enumerate(self.chain):
            try:
                decision = decide(self.name, visitor, ctx, now)
            except Exception:
                self._failures += 1
                log.exception("personalize_mw: strategy %s of slot %s failed", self.names[index], self.name)
                continue
            if decision is not None:
                break
        return self.tag(decision, visitor)

    def tag(self, decision: Decision | None, visitor: Profile | None) -> Decision | None:
        """The experiment's arm for this visitor, over whatever the chain decided."""
        experiment = self.experiment
        if experiment is None:
            return decision
        # No visitor id (or, unit: account, no account yet): outside the experiment. Inline: per slot, per page.
        if visitor is None or (self.by_account and visitor.account is None):
            if decision is None:  # the default, recorded so the unenrolled traffic is counted
                return Decision(None, f"{self.name}.default", experiment=experiment, arm=UNENROLLED, default=True)
            return self._tagged(decision, UNENROLLED)
        if decision is None:
            return None
        if self.holdout and in_holdout(unit_id(visitor, self.by_account) or "", self.name, experiment, self.holdout):
            return self._tagged(decision, HOLDOUT)
        return self._tagged(decision, TREATMENT)

    def _tagged(self, decision: Decision, arm: str) -> Decision:
        key = (id(decision), arm)
        hit = self._tags.get(key)
        if hit is not None and hit[0] is decision:
            return hit[1]
        d = decision
        tagged = Decision(d.variant, d.rule_id, d.template, d.static, d.variables, self.experiment, arm,
                          arm == HOLDOUT or d.default, None if arm == UNENROLLED else self.holdout)
        tags = self._tags
        if len(tags) >= 256:
            tags.clear()
        tags[key] = (decision, tagged)  # keeps ``decision`` alive, so its id is not reused meanwhile
        return tagged

    def preview(self, variant: str | None, segment: str | None) -> Decision | None:
        """The decision a preview link forces: a named variant, or what a segment would see."""
        for strategy in self.strategies:
            if isinstance(strategy, Previewable):
                found = strategy.preview(variant, segment)
                if found is not None:
                    return found
        if variant is not None:
            for spec in self.variants:
                if spec.variant == variant:
                    return spec.decision()
        return None

    def explain(self, ctx: RequestContext, visitor: Profile | None,
                now: float) -> tuple[list[str], Decision | None]:
        """(what was tried, as 'strategy:rule-id' with '+' for a match, the decision); for debugging."""
        tried: list[str] = []
        decision = None
        for name, strategy in zip(self.names, self.strategies, strict=True):
            try:
                if isinstance(strategy, Explaining):
                    tried.extend(f"{name}:{rid}{'+' if ok else '-'}"
                                 for rid, ok in strategy.explain(self.name, visitor, ctx, now))
                decision = strategy.decide(self.name, visitor, ctx, now)
            except Exception as exc:
                tried.append(f"{name}:error({type(exc).__name__})")
                continue
            if not isinstance(strategy, Explaining):
                tried.append(f"{name}:{decision.rule_id if decision else '-'}{'+' if decision else ''}")
            if decision is not None:
                break
        return tried, self.tag(decision, visitor)


def _compile_variant(build: BuildContext, variant: Variant, rule_id: str,
                     here: tuple[str | int, ...]) -> VariantSpec:
    template, static = build.compile_template(variant.template, variant.template_file, here)
    return VariantSpec(variant.variant, variant.id or rule_id, variant.weight, template, static,
                       variant.goal, variant.content)


def compile_variants(build: BuildContext, slot_name: str, variants: Sequence[Variant],
                     *keys: str | int) -> tuple[VariantSpec, ...]:
    """Compile a list of variants; used for ``variants:`` and by the journey for ``stages:``."""
    compiled = []
    problems = []
    for index, variant in enumerate(variants):
        here = ("slots", slot_name) + keys + (index,)
        try:
            compiled.append(_compile_variant(build, variant, f"{slot_name}.{variant.variant}", here))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return tuple(compiled)


def strategy_names(slot: Slot) -> list[str]:
    if slot.strategy is None:
        names = ["rules"] if slot.rules or not (slot.variants or slot.stages) else []
        if slot.stages:
            names.append("journey")
        if slot.variants:
            names.append("split")
        return names
    return [slot.strategy] if isinstance(slot.strategy, str) else list(slot.strategy)


def build_slot(name: str, slot: Slot, build: BuildContext) -> SlotDecider:
    names = strategy_names(slot)
    if not names:
        raise ConfigError([(("slots", name, "strategy"), "give at least one strategy")])
    if len(set(names)) != len(names):
        raise ConfigError([(("slots", name, "strategy"), "a strategy is listed twice")])
    extras: dict[str, Any] = dict(slot.model_extra or {})
    problems: list[Problem] = []
    for key in extras:
        if key not in names and key != "options":
            problems.append((("slots", name, key), f"unknown key {key!r} (an option block must be named like "
                                                   f"one of the slot's strategies: {', '.join(names)})"))
    variants = compile_variants(build, name, slot.variants, "variants") if slot.variants else ()
    if slot.variants and sum(v.weight for v in slot.variants) <= 0:
        problems.append((("slots", name, "variants"), "at least one variant needs a weight above 0"))
    experiment = slot.experiment
    if experiment is None and (slot.holdout or slot.variants or slot.unit == "account"):
        experiment = name  # an experiment by default is named after its slot
    if slot.unit == "account" and _PER_VISITOR.intersection(names):
        problems.append((("slots", name, "unit"), "unit: account assigns split variants and the holdout by "
                         "account; bandit and crowd learn per visitor (use strategy rules or split)"))
    chain: list[tuple[str, RuleSet]] = []
    for index, strategy in enumerate(names):
        here = ("slots", name, "strategy") + ((index,) if not isinstance(slot.strategy, str) else ())
        try:
            factory = resolve(strategy)
        except UnknownStrategy as exc:
            problems.append((here, str(exc)))
            continue
        options = extras.get(strategy) if strategy in extras else extras.get("options", {})
        spec = SlotSpec(name, slot, variants, options or {}, experiment)
        try:
            chain.append((strategy, factory(spec, build)))
        except ConfigError as exc:
            problems.extend(exc.problems)
        except (TypeError, ValueError, KeyError) as exc:
            problems.append((here, f"strategy {strategy} rejected this slot: {exc}"))
    if problems:
        raise ConfigError(problems)
    return SlotDecider(name, chain, experiment, slot.holdout, variants, by_account=slot.unit == "account")
