"""``strategy: bandit``: Thompson sampling (Beta-Bernoulli) over a slot's variants toward a goal.

Each variant (arm) has a Beta(alpha + conversions, beta + exposures - conversions)
posterior. Drawing from every posterior on every request would cost several
microseconds and make a visitor's variant change from page to page, so the
sampling is batched, at the ``update_every_s`` cadence: the share of each arm
becomes the probability that it is the best one (Monte Carlo over
``draws`` joint draws, i.e. Thompson sampling's own assignment probabilities),
and a visitor gets an arm from one hash of (visitor id, slot, salt) placed on
the arms' cumulative shares: sticky while the shares move little (one hash,
not one per arm, keeps the decision within its 5 µs budget). Until every arm
has ``min_exposures``, the shares stay equal.

Counts live in the state store (``state:``), so every process and machine
learns from all traffic. The unit is the visit (session): it counts once as
exposed when a page with the variant was sent (``arm: treatment`` records
only: the holdout and the unenrolled stay out), and once as converted when
``goal`` is reached, for the arm the visitor is assigned
(the arm as the shares stand when the conversion happens: a visitor moved
by an update in between is credited to the new arm, a small dilution that
keeps the cookie and the store free of per-visitor assignments). When the
store is down (a failed read or write in the last few seconds), the slot
shows its default.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from ..state import StateStore
from .experiment import in_holdout, unit
from .protocol import TREATMENT, BuildContext, Decision, SlotSpec
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
    def parse(cls, options: Mapping[str, Any], goals: Iterable[str]) -> BanditOptions:
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
        self.goal = self.opts.goal
        self.salt = spec.experiment or spec.name
        self.holdout = spec.config.holdout
        self.key = f"bandit:{self.salt}"
        self.store: StateStore = shared_store(build)
        self.arms = [v.variant for v in spec.variants]
        # Prebuilt and already tagged as the slot's experiment would tag them: deciding allocates nothing.
        self._decisions = {v.variant: dataclasses.replace(v.decision(), experiment=spec.experiment)
                           for v in spec.variants}
        self._ordered = [self._decisions[a] for a in self.arms]
        self._shares = {a: 1.0 / len(self.arms) for a in self.arms}
        self._bounds = self._cumulative(self._shares)
        self._next_update = 0.0
        self._rng = random.Random()
        # Sessions already counted (per process; a session ends after 30 idle minutes by default).
        self._seen: TTLCache[tuple[str, str], bool] = TTLCache(maxsize=200_000, ttl=2 * 3600)
        self._seen_lock = threading.Lock()

    # ------------------------------------------------------------ request path

    def decide(self, slot: str, visitor: Profile | None, ctx: RequestContext, now: float) -> Decision | None:
        if visitor is None:
            return None  # no id: cannot be assigned, nor counted
        if self.goal in visitor.goals:
            return None  # never a call to action for a goal already reached (nor a count of it)
        if not self.store.healthy():
            return None  # the store is down: the default content
        if now >= self._next_update:
            # ~10 ms of sampling: done on the store's thread, this request uses the current shares.
            self._next_update = now + self.opts.update_every_s
            self.store.schedule(self._recompute)
        return self._ordered[bisect_right(self._bounds, unit(visitor.visitor_id, slot, self.salt, "\x00bandit"))]

    def _recompute(self) -> None:
        counts = self.store.read(self.key)
        if counts is not None:  # the store is down: keep the shares until the next update
            self.update(counts, time.time())

    def _cumulative(self, shares: Mapping[str, float]) -> list[float]:
        total = sum(shares.values())
        bounds = list(accumulate(shares[a] / total for a in self.arms))
        bounds[-1] = 1.0
        return bounds[:-1]  # bisect over the inner bounds: the index is the arm

    def update(self, counts: Mapping[str, float], now: float) -> None:
        self._next_update = now + self.opts.update_every_s
        shares = thompson_shares(counts, self.arms, self.opts, self._rng)
        self._shares = shares
        self._bounds = self._cumulative(shares)

    @property
    def shares(self) -> dict[str, float]:
        return dict(self._shares)

    def arm_for(self, visitor_id: str) -> str | None:
        """The arm this visitor is assigned now; None for the holdout (not part of the bandit)."""
        if self.holdout and in_holdout(visitor_id, self.slot, self.salt, self.holdout):
            return None
        return self.arms[bisect_right(self._bounds, unit(visitor_id, self.slot, self.salt, "\x00bandit"))]

    # ------------------------------------------------------------ after sending (Personalizer.commit)

    def observe_records(self, records: Iterable[Mapping[str, Any]], rewritten: bool) -> None:
        """Count what was sent, per session: one exposure of this slot's treatment, one goal conversion.

        The unit is the visit (session): a visitor who sees the variant on five pages
        and converts once is one trial and one success, as Beta-Bernoulli wants. Records
        carry a session only with analytics consent; without it neither side is counted,
        so both come from the same visitors. A session seen by two worker processes may
        count twice, which lowers every arm's rate alike.
        """
        add = self.store.add
        for record in records:
            kind = record["type"]
            session = record.get("session")
            if not session:
                continue
            if kind == "exposure":
                if rewritten and record.get("slot") == self.slot and record.get("arm") == TREATMENT \
                        and record.get("variant") in self._decisions and self._first(session, "n"):
                    add(self.key, f"n:{record['variant']}")
            elif kind == "conversion" and record.get("goal") == self.opts.goal:
                visitor = record.get("visitor")
                arm = self.arm_for(visitor) if visitor else None
                if arm is not None and self._first(session, "s"):
                    add(self.key, f"s:{arm}")

    def _first(self, session: str, what: str) -> bool:
        key = (session, what)
        with self._seen_lock:
            if key in self._seen:
                return False
            self._seen[key] = True
            return True


def simulate(strategy: BanditStrategy, rates: Mapping[str, float], visitors: int, seed: int,
             batch: int = 500) -> dict[str, int]:
    """Serve ``visitors`` simulated visitors (for tests and bench): exposures per arm."""
    from ..core.context import RequestContext
    from ..core.visitor import Profile

    ctx = RequestContext("GET", "https", "bandit.test", "/", "", {})  # the bandit does not read it
    rng = random.Random(seed)
    strategy._rng.seed(seed)
    shown = dict.fromkeys(strategy.arms, 0)
    now = time.time()
    # Updates happen here, synchronously, at each batch: the store's thread never runs one
    # (decide() only schedules an update when one is due), so a seeded run is reproducible.
    strategy.update(strategy.store.read(strategy.key) or {}, now)
    for i in range(visitors):
        visitor = Profile(f"v{seed}-{i}")
        decision = strategy.decide(strategy.slot, visitor, ctx, now)
        assert decision is not None and decision.variant is not None
        shown[decision.variant] += 1
        session = f"s{seed}-{i}"  # one visit per simulated visitor
        records: list[dict[str, Any]] = [{"type": "exposure", "slot": strategy.slot, "arm": TREATMENT,
                                          "variant": decision.variant, "session": session}]
        if rng.random() < rates[decision.variant]:
            records.append({"type": "conversion", "goal": strategy.opts.goal, "visitor": visitor.visitor_id,
                            "session": session})
        strategy.observe_records(records, True)
        if (i + 1) % batch == 0:
            strategy.store.flush()
            strategy.store.invalidate()
            now += strategy.opts.update_every_s
            strategy.update(strategy.store.read(strategy.key) or {}, now)  # the next batch sees new shares
    return shown
