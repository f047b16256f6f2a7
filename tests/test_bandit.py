"""The bandit strategy: Thompson shares, convergence on the best arm, the holdout kept out, store down."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from personalize_mw import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.visitor import Profile
from personalize_mw.errors import ConfigError
from personalize_mw.rules.bandit import BanditOptions, BanditStrategy, simulate, thompson_shares
from personalize_mw.rules.engine import compiled_slots

KEY = "k" * 16


def bandit_config(**options: Any) -> dict[str, Any]:
    bandit = {"goal": "signup", "min_exposures": 50, "update_every_s": 60, "draws": 400, **options}
    return {
        "secret_keys": [KEY], "goals": {"signup": {"path": "/thanks"}},
        "slots": {"cta": {"strategy": "bandit", "bandit": bandit, "variants": [
            {"variant": "a", "template": "A"}, {"variant": "b", "template": "B"},
            {"variant": "c", "template": "C"}]}},
    }


def strategy_of(config: dict[str, Any], slot: str = "cta") -> BanditStrategy:
    found = compiled_slots(load_config(config)).slots[slot].strategies[0]
    assert isinstance(found, BanditStrategy)
    return found


def ctx() -> RequestContext:
    return RequestContext("GET", "http", "example.com", "/", "", {"user-agent": "Mozilla/5.0"})


def test_a_simulated_bandit_converges_on_the_best_arm() -> None:
    bandit = strategy_of(bandit_config())
    rates = {"a": 0.02, "b": 0.06, "c": 0.03}
    first = simulate(bandit, rates, 450, seed=7)  # one batch: no data yet, equal shares
    assert min(first.values()) > 100, first
    later = simulate(bandit, rates, 6000, seed=8)
    assert later["b"] > 0.6 * 6000, later
    assert bandit.shares["b"] > 0.8


def test_shares_are_equal_below_min_exposures_and_follow_the_posterior_after() -> None:
    opts = BanditOptions(goal="g", min_exposures=100, draws=2000)
    rng = random.Random(1)
    assert thompson_shares({"n:a": 99, "s:a": 50, "n:b": 500}, ["a", "b"], opts, rng) == {"a": 0.5, "b": 0.5}
    shares = thompson_shares({"n:a": 1000, "s:a": 100, "n:b": 1000, "s:b": 20}, ["a", "b"], opts, rng)
    assert shares["a"] > 0.99 and shares["b"] > 0  # never zero: the worse arm stays explorable
    # A strong prior holds the shares near equal against little data.
    strong = BanditOptions(goal="g", alpha=500, beta=500, min_exposures=0, draws=2000)
    shares = thompson_shares({"n:a": 20, "s:a": 4, "n:b": 20, "s:b": 1}, ["a", "b"], strong, rng)
    assert 0.35 < shares["a"] < 0.75


def test_assignment_is_sticky_and_needs_an_id() -> None:
    bandit = strategy_of(bandit_config())
    visitor = Profile("visitor-1")
    first = bandit.decide("cta", visitor, ctx(), 0.0)
    assert first is not None and first.variant in {"a", "b", "c"}
    assert all(bandit.decide("cta", visitor, ctx(), float(t)).variant == first.variant for t in range(5))
    assert bandit.decide("cta", None, ctx(), 0.0) is None
    assert bandit.decide("cta", Profile("visitor-1", goals=["signup"]), ctx(), 0.0) is None  # goal reached


def test_each_session_counts_once_exposed_and_once_converted_with_what_was_sent() -> None:
    bandit = strategy_of(bandit_config())
    visitor = Profile("v-count")
    arm = bandit.decide("cta", visitor, ctx(), 0.0).variant
    exposure = {"type": "exposure", "slot": "cta", "variant": arm, "arm": "treatment", "session": "s1"}
    bandit.observe_records([exposure], rewritten=False)  # not delivered: not seen
    bandit.observe_records([{**exposure, "arm": "holdout"}, {**exposure, "slot": "other"},
                            {**exposure, "arm": "unenrolled"}, {**exposure, "session": None}], rewritten=True)
    bandit.observe_records([exposure], rewritten=True)
    bandit.observe_records([exposure], rewritten=True)  # a second page of the same visit
    conversion = {"type": "conversion", "goal": "signup", "visitor": "v-count", "session": "s1"}
    bandit.observe_records([conversion, {**conversion, "goal": "newsletter"},
                            {**conversion, "visitor": None}, {**conversion, "session": None}], rewritten=False)
    bandit.observe_records([conversion], rewritten=True)  # track() again in the same visit
    bandit.observe_records([{**exposure, "session": "s2"}], rewritten=True)  # the next visit
    bandit.store.flush()
    assert bandit.store.backend.read(bandit.key) == {f"n:{arm}": 2.0, f"s:{arm}": 1.0}


def test_the_holdout_is_kept_out_of_the_bandit() -> None:
    bandit = strategy_of({**bandit_config(), "slots": {"cta": {**bandit_config()["slots"]["cta"], "holdout": 0.5}}})
    held = [f"v{i}" for i in range(400) if bandit.arm_for(f"v{i}") is None]
    assert 120 < len(held) < 280  # about half
    bandit.observe_records([{"type": "conversion", "goal": "signup", "visitor": v, "session": f"s-{v}"}
                            for v in held], True)
    bandit.store.flush()
    assert bandit.store.backend.read(bandit.key) == {}


def test_store_down_means_the_default() -> None:
    bandit = strategy_of(bandit_config())
    visitor = Profile("v")
    assert bandit.decide("cta", visitor, ctx(), 0.0) is not None

    class Down:
        def incr(self, items: Any) -> None:
            raise ConnectionError("store down")

        def read(self, key: str) -> dict[str, float]:
            raise ConnectionError("store down")

        def close(self) -> None:
            pass

    bandit.store.backend = Down()  # type: ignore[assignment]
    bandit.observe_records([{"type": "exposure", "slot": "cta", "arm": "treatment", "variant": "a",
                             "session": "s"}], True)
    assert not bandit.store.flush()  # the failed write marks the store down...
    assert bandit.decide("cta", visitor, ctx(), 1.0) is None  # ...and the slot shows its default


def test_shares_are_recomputed_off_the_request_path() -> None:
    bandit = strategy_of(bandit_config(min_exposures=10, update_every_s=60))
    for arm, n, s in (("a", 1000, 10), ("b", 1000, 200), ("c", 1000, 10)):
        bandit.store.add(bandit.key, f"n:{arm}", n)
        bandit.store.add(bandit.key, f"s:{arm}", s)
    bandit.store.flush()
    bandit.decide("cta", Profile("v"), ctx(), 0.0)  # the first decision schedules an update
    deadline = time.monotonic() + 10
    while bandit.shares["b"] < 0.9:
        assert time.monotonic() < deadline, "the store's thread never updated the shares"
        time.sleep(0.02)


@pytest.mark.parametrize("options, message", [
    ({"goal": "nope"}, "not one of the config's goals"),
    ({"goal": "signup", "prior": {"alpha": 0}}, "alpha"),
    ({"goal": "signup", "explore": 1}, "unknown bandit option"),
])
def test_bad_options_stop_start_up(options: dict[str, Any], message: str) -> None:
    config = bandit_config()
    config["slots"]["cta"]["bandit"] = options
    with pytest.raises(ConfigError, match=message):
        load_config(config)
