"""Decisions remembered for visitors without a profile: only where they are a pure function of request fields."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CORE_SECRET
from hypothesis import given, settings
from hypothesis import strategies as st

from personalize_mw.config import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.visitor import Profile
from personalize_mw.rules import conditions
from personalize_mw.rules.engine import compiled_slots
from personalize_mw.rules.slot import SlotDecider

NOW = 1_800_000_000.0
SEGMENTS = {
    "social": {"any": [{"utm_medium": {"in": ["social", "paid_social"]}}, {"referrer_host": "t.co"}]},
    "dach": {"country": {"in": ["DE", "AT", "CH"]}},
    "loyal": {"visits": {"gte": 3}},
}


def slot(rules: list[dict[str, Any]], **extra: Any) -> SlotDecider:
    config = load_config({"secret_keys": [CORE_SECRET], "sink": "jsonl:/dev/null", "segments": SEGMENTS,
                          "regex_timeout_ms": 1, "slots": {"hero": {"rules": rules, **extra}}})
    return compiled_slots(config).slots["hero"]


def rule(if_: Any, variant: str) -> dict[str, Any]:
    return {"if": if_, "variant": variant, "template": f"<b>{variant}</b>"}


def request(query: str = "", country: str | None = None, referer: str | None = None,
            language: str | None = None, path: str = "/") -> RequestContext:
    headers = {"user-agent": "Mozilla/5.0 (X11)"}
    if country is not None:
        headers["cf-ipcountry"] = country
    if referer is not None:
        headers["referer"] = referer
    if language is not None:
        headers["accept-language"] = language
    return RequestContext("GET", "https", "example.com", path, query, headers)


MIXED = [
    rule({"any": ["loyal", {"all": ["social", {"language": "en"}]}]}, "a"),
    rule({"not": {"any": ["dach", "loyal"]}, "utm_campaign": {"matches": "^q[1-4]-"}}, "b"),
    rule({"all": ["dach", {"not": "loyal"}]}, "c"),
    rule({"path_prefix": "/blog", "query.ref": "x"}, "d"),
]


@settings(max_examples=200, deadline=None)
@given(medium=st.sampled_from(["", "social", "cpc"]), campaign=st.sampled_from(["", "q3-x", "q9-x"]),
       country=st.sampled_from([None, "DE", "FR", "ch"]), referer=st.sampled_from([None, "https://t.co/x"]),
       language=st.sampled_from([None, "en-GB", "de"]), path=st.sampled_from(["/", "/blog/a"]),
       ref=st.sampled_from(["", "x"]))
def test_a_remembered_decision_is_the_one_the_rules_make(medium: str, campaign: str, country: str | None,
                                                         referer: str | None, language: str | None, path: str,
                                                         ref: str) -> None:
    hero = MEMOIZED
    query = "&".join(f"{k}={v}" for k, v in (("utm_medium", medium), ("utm_campaign", campaign), ("ref", ref)) if v)
    for _ in range(2):  # the first asks the rules, the second the memo
        ctx = request(query, country, referer, language, path)
        assert hero.decide(ctx, None, NOW) == hero.strategies[0].decide("hero", None, ctx, NOW)


MEMOIZED = slot(MIXED)


def test_the_key_is_the_request_fields_the_rules_read() -> None:
    assert MEMOIZED.strategies[0].reads_without_profile == frozenset(
        {"utm_medium", "referrer_host", "language", "country", "utm_campaign", "path_prefix", "query.ref"})
    MEMOIZED.decide(request("utm_medium=social", language="en"), None, NOW)
    assert MEMOIZED._memo  # remembered


@pytest.mark.parametrize("clock", [{"hour": {"gte": 9}}, {"weekday": "mon"}])
def test_a_rule_reading_the_clock_is_never_remembered(clock: dict[str, Any]) -> None:
    hero = slot([rule({"all": ["social", clock]}, "a")])
    assert hero._key is None
    hero.decide(request("utm_medium=social"), None, NOW)
    assert not hero._memo


def test_a_visitor_with_a_profile_is_decided_by_the_rules_each_time() -> None:
    hero = slot(MIXED)
    profile = Profile("v1", visits=1)
    assert hero.decide(request(country="DE"), profile, NOW).variant == "c"
    profile.visits = 3  # the same request fields, another answer: the profile's
    assert hero.decide(request(country="DE"), profile, NOW).variant == "a"
    assert not hero._memo


def test_a_strategy_that_is_not_pure_keeps_the_slot_unremembered() -> None:
    hero = slot([rule("social", "a")], strategy=["rules", "python:strategy_plugins:Weekday"],
                options={"path": "/sale", "template": "<i>weekday</i>"})
    assert hero._key is None


def test_a_regex_that_timed_out_is_not_remembered() -> None:
    hero = slot([rule({"query.q": {"matches": r"^(a|a)*$"}}, "b")])
    slow = "q=" + "a" * 60 + "!"  # catastrophic backtracking: cut short by the timeout
    before = conditions.regex_timeouts
    assert hero.decide(request(slow), None, NOW) is None
    assert conditions.regex_timeouts > before and not hero._memo  # its false is not the pattern's answer
    assert hero.decide(request("q=aaa"), None, NOW).variant == "b"
    assert list(hero._memo.values())[0].variant == "b"  # an answer in time is remembered


def test_the_memo_is_bounded() -> None:
    hero = slot([rule({"query.q": "1"}, "a")])
    for n in range(3000):
        hero.decide(request(f"q={n}"), None, NOW)
    assert 0 < len(hero._memo) <= 1024


@pytest.mark.parametrize("condition", [
    {"country": "DE"},
    {"country": "DE", "language": "de"},
    {"country": "DE", "language": "de", "utm_medium": "cpc"},
])
def test_keys_of_one_two_and_three_fields_tell_requests_apart(condition: dict[str, Any]) -> None:
    hero = slot([rule(condition, "a")])
    matching = {"query": "utm_medium=cpc", "country": "DE", "language": "de"}
    assert hero.decide(request(**matching), None, NOW).variant == "a"
    read = {"utm_medium" if name == "query" else name for name in matching}.intersection(condition)
    for name, other in (("country", "FR"), ("language", "fr"), ("query", "utm_medium=email")):
        if ("utm_medium" if name == "query" else name) in read:  # a field the key holds: another answer
            assert hero.decide(request(**{**matching, name: other}), None, NOW) is None
    assert hero.decide(request(**matching), None, NOW).variant == "a"
