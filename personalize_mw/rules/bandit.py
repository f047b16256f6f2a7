"""``strategy: bandit``: Thompson sampling (Beta-Bernoulli) over a slot's variants toward a goal.

Each variant (arm) has a Beta(alpha + conversions, beta + exposures - conversions)
posterior. Drawing from every posterior on every request would cost several
microseconds and make a visitor's variant change from page to page, so the
sampling is batched, at the ``update_every_s`` cadence: the share of each arm
becomes the probability that it is the best one (Monte Carlo over
``draws`` joint draws, i.e. Thompson sampling's own assignment probabilities),
and a visitor gets an arm by weighted rendezvous hashing on those shares
(:func:`personalize_mw.rules.experiment.choose`): sticky while the shares
move little, and only the visitors of a growing or shrinking arm move.
Until every arm has ``min_exposures``, the shares stay equal.

Counts live in the state store (``state:``), so every process and machine
learns from all traffic: an exposure counts when a page with the variant was
sent (``arm: treatment`` records only: the holdout and the unenrolled stay
out), a conversion of ``goal`` counts for the arm the visitor is assigned.
When the store cannot answer, the slot shows its default.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..state import StateStore
from .experiment import choose, in_holdout
from .protocol import TREATMENT, BuildContext, Decision, SlotSpec, VariantSpec
from .shared_state import shared_store

if TYPE_CHECKING:
    from ..core.context import RequestContext
    from ..core.visitor import Profile


@dataclasses.dataclass(frozen=True)
class BanditOptions:
    goal: str
    alpha: float = 1.0  # prior: conversions seen before any data (Beta(1, 1) = uniform)
    beta: float = 1.0  # prior: non-conversions seen before any data
    min_exposures: int = 100  # per arm, before the shares move away from equal
    update_every_s: float = 60.0  # how often the shares are recomputed
    draws: int = 2000  # Monte Carlo draws per update

    @classmethod
    def parse(cls, options: Mapping[str, Any], goals: Iterable[str]) -> "BanditOptions":
        known = {f.name for f in dataclasses.fields(cls)} | {"prior"}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown bandit option(s): {', '.join(sorted(unknown))}")
        if "goal" not in options:
            raise ValueError("a bandit needs 'goal:' (the goal it optimizes)")
        if options["goal"] not in set(goals):
            raise ValueError(f"bandit goal {options['goal']!r} is not one of the config's goals")
        values = {k: v for k, v in options.items() if k != "prior"}
        prior = options.get("prior") or {}
        values.update({k: prior[k] for k in ("alpha", "beta") if k in prior})
        made = cls(**values)
        if made.alpha <= 0 or made.beta <= 0 or made.min_exposures < 0 or made.update_every_s <= 0 \
                or not 10 <= made.draws <= 1_000_000:
            raise ValueError("bandit: prior alpha/beta > 0, min_exposures >= 0, update_every_s > 0, "
                             "10 <= draws <= 1000000")
        return made


def thompson_shares(counts: Mapping[str, float], arms: list[str], opts: BanditOptions,
                    rng: random.Random) -> dict[str, float]:
    """P(arm is best) under the Beta posteriors; equal shares until every arm has min_exposures."""
    n = {a: counts.get(f"n:{a}", 0.0) for a in arms}
    if any(n[a] < opts.min_exposures for a in arms):
        return {a: 1.0 / len(arms) for a in arms}
    posterior = [(a, opts.alpha + min(counts.get(f"s:{a}", 0.0), n[a]),
                  opts.beta + max(n[a] - counts.get(f"s:{a}", 0.0), 0.0)) for a in arms]
    wins = dict.fromkeys(arms, 0)
    beta = rng.betavariate
    for _ in range(opts.draws):
        best = max(posterior, key=lambda p: beta(p[1], p[2]))
        wins[best[0]] += 1
    # A floor keeps every arm explorable (a weight of 0 would freeze it out for good).
    floor = 0.5 / opts.draws
    return {a: max(wins[a] / opts.draws, floor) for a in arms}


class BanditStrategy:
    def __init__(self, spec: SlotSpec, build: BuildContext) -> None:
        if len(spec.variants) < 2:
            raise ValueError("a bandit needs at least two 'variants:'")
        self.opts = BanditOptions.parse(spec.options, build.config.goals)
        self.slot = spec.name
        self.salt = spec.experiment or spec.name
        self.holdout = spec.config.holdout
        self.key = f"bandit:{self.salt}"
        self.store: StateStore = shared_store(build)
        self.arms = [v.variant for v in spec.variants]
        self._specs = spec.variants
        self._decisions = {v.variant: v.decision() for v in spec.variants}
        self._current: tuple[VariantSpec, ...] = tuple(dataclasses.replace(v, weight=1.0) for v in spec.variants)
        self._shares = {a: 1.0 / len(self.arms) for a in self.arms}
        self._next_update = 0.0
        self._rng = random.Random()

    # ------------------------------------------------------------ request path

    def decide(self, slot: str, visitor: "Profile | None", ctx: "RequestContext", now: float) -> Decision | None:
        if visitor is None:
            return None  # no id: cannot be assigned, nor counted
        counts = self.store.read(self.key)
        if counts is None:
            return None  # the store is down: the default content
        if now >= self._next_update:
            self.update(counts, now)
        return self._decisions[choose(self._current, visitor.visitor_id, slot, self.salt).variant]

    def update(self, counts: Mapping[str, float], now: float) -> None:
        self._next_update = now + self.opts.update_every_s
        shares = thompson_shares(counts, self.arms, self.opts, self._rng)
        self._shares = shares
        self._current = tuple(dataclasses.replace(v, weight=shares[v.variant]) for v in self._specs)

    @property
    def shares(self) -> dict[str, float]:
        return dict(self._shares)

    def arm_for(self, visitor_id: str) -> str | None:
        """The arm this visitor is assigned now; None for the holdout (not part of the bandit)."""
        if self.holdout and in_holdout(visitor_id, self.slot, self.salt, self.holdout):
            return None
        return choose(self._current, visitor_id, self.slot, self.salt).variant

    # ------------------------------------------------------------ after sending (Personalizer.commit)

    def observe_records(self, records: Iterable[Mapping[str, Any]], rewritten: bool) -> None:
        """Count what was sent: exposures of this slot's treatment, conversions of the goal."""
        add = self.store.add
        for record in records:
            kind = record["type"]
            if kind == "exposure":
                if rewritten and record.get("slot") == self.slot and record.get("arm") == TREATMENT \
                        and record.get("variant") in self._decisions:
                    add(self.key, f"n:{record['variant']}")
            elif kind == "conversion" and record.get("goal") == self.opts.goal:
                visitor = record.get("visitor")
                arm = self.arm_for(visitor) if visitor else None
                if arm is not None:
                    add(self.key, f"s:{arm}")


def simulate(strategy: BanditStrategy, rates: Mapping[str, float], visitors: int, seed: int,
             batch: int = 500) -> dict[str, int]:
    """Serve ``visitors`` simulated visitors (for tests and bench): exposures per arm."""
    from ..core.visitor import Profile

    rng = random.Random(seed)
    strategy._rng.seed(seed)
    shown = dict.fromkeys(strategy.arms, 0)
    now = time.time()
    for i in range(visitors):
        visitor = Profile(f"v{seed}-{i}")
        decision = strategy.decide(strategy.slot, visitor, None, now)  # type: ignore[arg-type]
        assert decision is not None and decision.variant is not None
        shown[decision.variant] += 1
        records: list[dict[str, Any]] = [{"type": "exposure", "slot": strategy.slot, "arm": TREATMENT,
                                          "variant": decision.variant}]
        if rng.random() < rates[decision.variant]:
            records.append({"type": "conversion", "goal": strategy.opts.goal, "visitor": visitor.visitor_id})
        strategy.observe_records(records, True)
        if (i + 1) % batch == 0:
            strategy.store.flush()
            now += strategy.opts.update_every_s  # the next batch sees updated shares
            strategy.store.invalidate()
    return shown
