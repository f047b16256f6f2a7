"""Strategies through the RuleSet protocol: alone, chained, plug-ins, failures."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CORE_SECRET

from personalize_mw.config import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.visitor import Profile
from personalize_mw.errors import ConfigError
from personalize_mw.rules import registry
from personalize_mw.rules.engine import RulesStrategy, compiled_slots
from personalize_mw.rules.protocol import Decision, RuleSet

NOW = 1_800_000_000.0


def ctx(path: str = "/", query: str = "") -> RequestContext:
    return RequestContext("GET", "http", "example.com", path, query, {"user-agent": "Mozilla/5.0 (X11)"})


def slots(**slot_specs: Any) -> dict[str, Any]:
    config = load_config({"secret_keys": [CORE_SECRET], "sink": "jsonl:/dev/null", "slots": slot_specs,
                          "segments": {"cpc": {"utm_medium": "cpc"}}})
    return compiled_slots(config).slots


def rule(if_: Any, variant: str, **extra: Any) -> dict[str, Any]:
    return {"if": if_, "variant": variant, "template": f"<b>{variant}</b>", **extra}


def test_rules_alone_first_match_wins_and_is_a_ruleset() -> None:
    hero = slots(hero={"rules": [rule("cpc", "ads"), rule({"path": "/"}, "home")]})["hero"]
    assert isinstance(hero.strategies[0], RulesStrategy) and isinstance(hero.strategies[0], RuleSet)
    assert hero.decide(ctx("/", "utm_medium=cpc"), None, NOW).variant == "ads"
    assert hero.decide(ctx("/"), None, NOW).variant == "home"
    assert hero.decide(ctx("/other"), None, NOW) is None
    decision = hero.decide(ctx("/"), None, NOW)
    assert (decision.static, decision.arm, decision.experiment, decision.default) == (b"<b>home</b>", "treatment",
                                                                                       None, False)


def test_a_chain_asks_each_strategy_in_order_first_decision_wins() -> None:
    plugin = "python:strategy_plugins:Weekday"
    hero = slots(hero={"strategy": [plugin, "rules"], "rules": [rule({"path_prefix": "/"}, "any")],
                       "options": {"path": "/sale", "template": "<i>weekday</i>"}})["hero"]
    assert hero.decide(ctx("/sale"), None, NOW).variant == "weekday"  # the plug-in first
    assert hero.decide(ctx("/else"), None, NOW).variant == "any"  # it passed: the rules decide
    other_order = slots(hero={"strategy": ["rules", plugin], "rules": [rule({"path_prefix": "/"}, "any")],
                              "options": {"path": "/sale", "template": "<i>weekday</i>"}})["hero"]
    assert other_order.decide(ctx("/sale"), None, NOW).variant == "any"


def test_a_failing_strategy_is_skipped_and_the_next_decides() -> None:
    hero = slots(hero={"strategy": ["python:strategy_plugins:Broken", "rules"],
                       "rules": [rule({"path": "/"}, "home")]})["hero"]
    assert hero.decide(ctx("/"), None, NOW).variant == "home"
    alone = slots(hero={"strategy": "python:strategy_plugins:Broken"})["hero"]
    assert alone.decide(ctx("/"), None, NOW) is None


def test_register_and_entry_point_names_resolve_like_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    class Always:
        def __init__(self, spec: Any, build: Any) -> None:
            self.decision = Decision("always", "x.always", None, b"A")

        def decide(self, slot: str, visitor: Any, ctx: Any, now: float) -> Decision:
            return self.decision

    monkeypatch.setitem(registry._registered, "always", Always)
    assert slots(hero={"strategy": "always"})["hero"].decide(ctx(), None, NOW).variant == "always"

    class FakeEntryPoint:
        name = "from-ep"

        def load(self) -> type:
            return Always

    monkeypatch.setattr(registry.STRATEGIES, "entry_points", {"from-ep": FakeEntryPoint()})
    monkeypatch.delitem(registry._registered, "from-ep", raising=False)
    assert slots(hero={"strategy": "from-ep"})["hero"].decide(ctx(), None, NOW).variant == "always"


@pytest.mark.parametrize("spec, message", [
    ({"strategy": "nope"}, "unknown strategy 'nope'"),
    ({"strategy": "python:no_such_module:X"}, "cannot import no_such_module"),
    ({"strategy": ["rules", "rules"]}, "listed twice"),
    ({"rules": [], "crowdd": {}}, "unknown key 'crowdd'"),
    ({"strategy": "split"}, "needs a 'variants:' list"),
])
def test_bad_strategies_stop_start_up_with_the_key(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        slots(hero=spec)
    assert message in str(caught.value)
    assert all(path[:2] == ("slots", "hero") for path, _ in caught.value.problems)


def test_explain_lists_rules_tried_and_the_one_that_fired() -> None:
    hero = slots(hero={"rules": [rule("cpc", "ads", id="paid"), rule({"path": "/"}, "home", id="home-page")]})["hero"]
    tried, decision = hero.explain(ctx("/"), Profile("v" * 22), NOW)
    assert tried == ["rules:paid-", "rules:home-page+"] and decision.variant == "home"
