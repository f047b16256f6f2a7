"""Conditions: every field and operator, segments, errors, profile fields without consent, ReDoS."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from personalize_mw.core.context import RequestContext
from personalize_mw.core.visitor import Profile
from personalize_mw.errors import ConditionError
from personalize_mw.rules.conditions import Condition, compile_condition, compile_segments

NOW = 1_750_000_000.0
DAY = 86400
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
IPAD = "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
ANDROID_TABLET = "Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def ctx(path: str = "/", query: str = "", headers: dict[str, str] | None = None,
        country_header: str = "cf-ipcountry") -> RequestContext:
    base = {"user-agent": DESKTOP}
    base.update(headers or {})
    return RequestContext("GET", "https", "example.com", path, query, base, country_header)


def profile(**fields: Any) -> Profile:
    return Profile("v1", **fields)


def check(spec: Any, request: RequestContext | None = None, prof: Profile | None = None,
          segments: dict[str, Condition] | None = None) -> bool:
    condition = compile_condition(spec, segments or {})
    return condition(request or ctx(), prof, NOW)


# ---------------------------------------------------------------- request fields


def test_path_and_path_prefix() -> None:
    assert check({"path": "/pricing"}, ctx("/pricing"))
    assert not check({"path": "/pricing"}, ctx("/pricing/enterprise"))
    assert check({"path_prefix": "/blog/"}, ctx("/blog/post-1"))
    assert not check({"path_prefix": "/blog/"}, ctx("/blogs"))
    assert check({"path_prefix": {"eq": "/blog"}}, ctx("/blog"))  # an explicit operator wins


def test_query_fields() -> None:
    request = ctx(query="plan=pro&ref=&plan=free")
    assert check({"query.plan": "pro"}, request)  # the first value counts
    assert check({"query.ref": ""}, request)
    assert not check({"query.missing": {"ne": None}}, request)
    assert check({"query.missing": {"eq": None}}, request)


def test_referrer_host() -> None:
    request = ctx(headers={"referer": "https://www.Google.com/search?q=x"})
    assert check({"referrer_host": "www.google.com"}, request)
    assert check({"referrer_host": {"contains": "google"}}, request)
    assert not check({"referrer_host": {"contains": "google"}}, ctx())
    assert not check({"referrer_host": {"contains": "x"}}, ctx(headers={"referer": "http://[bad"}))


@pytest.mark.parametrize("key", ["source", "medium", "campaign", "term", "content"])
def test_utm_fields(key: str) -> None:
    request = ctx(query=f"utm_{key}=Value-{key}")
    assert check({f"utm_{key}": f"Value-{key}"}, request)
    assert not check({f"utm_{key}": f"Value-{key}"}, ctx())
    assert not check({f"utm_{key}": {"prefix": "Value"}}, ctx(query=f"utm_{key}="))  # empty is absent


@pytest.mark.parametrize(
    "user_agent, device",
    [(DESKTOP, "desktop"), (IPHONE, "mobile"), (IPAD, "tablet"), (ANDROID_TABLET, "tablet"),
     (GOOGLEBOT, "bot"), ("", "bot"), ("curl/8.5.0", "bot")],
)
def test_device(user_agent: str, device: str) -> None:
    assert check({"device": device}, ctx(headers={"user-agent": user_agent}))
    others = [d for d in ("mobile", "tablet", "desktop", "bot") if d != device]
    assert not check({"device": {"in": others}}, ctx(headers={"user-agent": user_agent}))


def test_language() -> None:
    assert check({"language": "de"}, ctx(headers={"accept-language": "de-CH,de;q=0.9,en;q=0.8"}))
    assert check({"language": {"in": ["fr", "en"]}}, ctx(headers={"accept-language": "EN-us"}))
    assert not check({"language": {"in": ["fr", "en"]}}, ctx(headers={"accept-language": "*"}))
    assert not check({"language": {"ne": None}}, ctx())


def test_country_from_default_and_configured_header() -> None:
    assert check({"country": "DE"}, ctx(headers={"cf-ipcountry": "de"}))
    assert not check({"country": {"ne": None}}, ctx(headers={"cf-ipcountry": "XX1"}))
    request = ctx(headers={"x-country": "FR", "cf-ipcountry": "DE"}, country_header="x-country")
    assert check({"country": "FR"}, request)


# ---------------------------------------------------------------- operators


@pytest.mark.parametrize(
    "op, operand, value, expected",
    [
        ("eq", "/a", "/a", True), ("eq", "/a", "/b", False),
        ("ne", "/a", "/b", True), ("ne", "/a", "/a", False),
        ("in", ["/a", "/b"], "/b", True), ("in", ["/a", "/b"], "/c", False),
        ("not_in", ["/a", "/b"], "/c", True), ("not_in", ["/a", "/b"], "/a", False),
        ("prefix", "/blog", "/blog/x", True), ("prefix", "/blog", "/x/blog", False),
        ("contains", "sale", "/summer-sale/", True), ("contains", "sale", "/summer/", False),
        ("matches", r"^/p/\d+$", "/p/42", True), ("matches", r"^/p/\d+$", "/p/x", False),
        ("matches", "pric", "/our-pricing", True),  # a search, not an anchored match
    ],
)
def test_string_operators(op: str, operand: Any, value: str, expected: bool) -> None:
    assert check({"path": {op: operand}}, ctx(value)) is expected


@pytest.mark.parametrize(
    "op, operand, expected",
    [("gt", 3, False), ("gt", 2, True), ("gte", 3, True), ("gte", 4, False),
     ("lt", 4, True), ("lt", 3, False), ("lte", 3, True), ("lte", 2, False),
     ("eq", 3, True), ("ne", 3, False), ("in", [1, 3], True), ("not_in", [1, 3], False)],
)
def test_numeric_operators_on_visits(op: str, operand: Any, expected: bool) -> None:
    assert check({"visits": {op: operand}}, prof=profile(visits=3)) is expected


def test_numeric_operators_on_missing_or_text_values_are_false() -> None:
    assert not check({"utm_term": {"gt": 0}}, ctx())
    assert not check({"query.n": {"gt": 0}}, ctx(query="n=5"))  # query values are text


def test_several_operators_must_all_hold() -> None:
    spec = {"visits": {"gte": 2, "lt": 5}}
    assert [check(spec, prof=profile(visits=n)) for n in (1, 2, 4, 5)] == [False, True, True, False]


def test_string_operators_on_missing_value_are_false() -> None:
    for op, operand in (("prefix", "x"), ("contains", "x"), ("matches", ".*")):
        assert not check({"utm_source": {op: operand}}, ctx())


# ---------------------------------------------------------------- profile fields


def test_visits_scalar_is_equality() -> None:
    assert check({"visits": 2}, prof=profile(visits=2))
    assert not check({"visits": 2}, prof=profile(visits=3))


def test_viewed_forms() -> None:
    p = profile(paths=["/", "/pricing", "/blog/a", "/pricing", "/blog/b"])
    assert check({"viewed": "/pricing"}, prof=p)
    assert not check({"viewed": "/about"}, prof=p)
    assert check({"viewed": {"path": "/pricing", "times": 2}}, prof=p)
    assert not check({"viewed": {"path": "/pricing", "times": 3}}, prof=p)
    assert check({"viewed": {"prefix": "/blog/"}}, prof=p)
    assert check({"viewed": {"prefix": "/blog/", "times": 2}}, prof=p)
    assert not check({"viewed": {"prefix": "/blog/", "times": 3}}, prof=p)


def test_goal_completed_forms() -> None:
    p = profile(goals=["signup", "whitepaper"])
    assert check({"goal_completed": "signup"}, prof=p)
    assert not check({"goal_completed": "demo"}, prof=p)
    assert check({"goal_completed": {"in": ["demo", "whitepaper"]}}, prof=p)
    assert not check({"goal_completed": {"in": ["demo"]}}, prof=p)
    assert check({"goal_completed": {"not_in": ["demo"]}}, prof=p)
    assert not check({"goal_completed": {"not_in": ["demo", "signup"]}}, prof=p)
    assert check({"goal_completed": {"eq": "signup"}}, prof=p)
    assert check({"goal_completed": {"ne": "demo"}}, prof=p)


def test_days_since_first_visit() -> None:
    p = profile(first_seen=int(NOW - 10 * DAY))
    assert check({"days_since_first_visit": {"gte": 10}}, prof=p)
    assert not check({"days_since_first_visit": {"gt": 10}}, prof=p)
    assert check({"days_since_first_visit": {"lt": 1}}, prof=profile(first_seen=int(NOW - 3600)))
    assert check({"days_since_first_visit": 0}, prof=profile(first_seen=0))  # never seen: 0


def test_channel_is_the_sessions_channel_from_the_profile() -> None:
    social = profile(session_id="s1", session_channel="social")
    assert check({"channel": "social"}, prof=social)
    assert not check({"channel": "email"}, prof=social)
    assert check({"channel": {"in": ["email", "social"]}}, prof=social)
    assert check({"channel": {"ne": "social"}}, prof=profile())  # no session yet: no channel
    assert not check({"channel": "social"}, prof=None)  # no profile, no consent: unknown, so false
    assert not check({"not": {"channel": "social"}}, prof=None)


@pytest.mark.parametrize(
    "spec",
    [
        {"visits": {"gte": 0}},
        {"channel": {"ne": "x"}},
        {"viewed": {"prefix": "/"}},
        {"goal_completed": {"not_in": ["x"]}},
        {"days_since_first_visit": {"gte": 0}},
        {"not": {"visits": {"gt": 3}}},
        {"not": {"not": {"visits": {"gte": 0}}}},
        {"not": {"goal_completed": "signup"}},
        {"any": [{"path": "/nope"}, {"visits": {"gte": 1}}]},
        {"not": {"any": [{"path": "/nope"}, {"visits": {"gt": 3}}]}},
        {"all": [{"path": "/"}, {"not": {"viewed": "/x"}}]},
        {"path": "/", "visits": {"gte": 0}},
    ],
)
def test_profile_conditions_are_false_without_a_profile(spec: Any) -> None:
    request = ctx("/")
    assert check(spec, request, profile(visits=1, paths=["/"])) is True  # each holds for a known visitor
    assert check(spec, request, None) is False


def test_profile_conditions_hold_with_a_profile() -> None:
    assert check({"not": {"visits": {"gt": 3}}}, prof=profile(visits=1))
    assert check({"any": [{"path": "/nope"}, {"visits": {"gte": 1}}]}, ctx("/"), profile(visits=1))


def test_a_request_branch_of_any_decides_without_a_profile() -> None:
    # Three-valued logic: unknown (the profile branch) loses to a True branch of any,
    # and to a False branch of all; a negated unknown stays unknown, so never fires.
    spec = {"any": [{"path": "/"}, {"visits": {"gt": 3}}]}
    assert check(spec, ctx("/"), None) is True
    assert check({"not": spec}, ctx("/"), None) is False
    assert check({"all": [{"path": "/x"}, {"visits": {"gt": 3}}]}, ctx("/"), None) is False
    assert check({"not": {"all": [{"path": "/x"}, {"visits": {"gt": 3}}]}}, ctx("/"), None) is True


def test_request_conditions_hold_without_a_profile() -> None:
    assert check({"not": {"path": "/x"}}, ctx("/"), None)
    assert check({"any": [{"path": "/x"}, {"device": "desktop"}]}, ctx("/"), None)


# ---------------------------------------------------------------- combinators and segments


def test_all_any_not() -> None:
    request = ctx("/pricing", "utm_medium=cpc")
    assert check({"all": [{"path": "/pricing"}, {"utm_medium": "cpc"}]}, request)
    assert not check({"all": [{"path": "/pricing"}, {"utm_medium": "email"}]}, request)
    assert check({"any": [{"path": "/x"}, {"utm_medium": "cpc"}]}, request)
    assert not check({"any": [{"path": "/x"}, {"utm_medium": "email"}]}, request)
    assert check({"not": {"path": "/x"}}, request)
    assert not check({"not": {"any": [{"path": "/x"}, {"path": "/pricing"}]}}, request)


def test_keys_of_one_mapping_must_all_hold() -> None:
    request = ctx("/pricing", "utm_medium=cpc")
    assert check({"path": "/pricing", "utm_medium": "cpc"}, request)
    assert not check({"path": "/pricing", "utm_medium": "email"}, request)


def test_segments_reference_segments() -> None:
    segments = compile_segments({
        "paid": {"utm_medium": {"in": ["cpc", "ppc"]}},
        "mobile": {"device": "mobile"},
        "paid_mobile": {"all": ["paid", {"segment": "mobile"}]},
        "not_paid_mobile": {"not": "paid_mobile"},
        "returning": {"visits": {"gte": 2}},
        "engaged": {"any": ["returning", {"viewed": "/pricing"}]},
    }, regex_timeout=0.005)
    phone = ctx("/", "utm_medium=cpc", {"user-agent": IPHONE})
    desktop = ctx("/", "utm_medium=cpc")
    assert segments["paid_mobile"](phone, None, NOW)
    assert not segments["paid_mobile"](desktop, None, NOW)
    assert segments["not_paid_mobile"](desktop, None, NOW)
    assert check("paid_mobile", phone, segments=segments)
    assert check({"segment": "paid"}, desktop, segments=segments)
    assert segments["engaged"](ctx(), profile(visits=1, paths=["/pricing"]), NOW)
    assert not segments["engaged"](ctx(), None, NOW)
    assert segments["engaged"].uses_profile and not segments["paid_mobile"].uses_profile


def test_segment_must_be_defined_before_use() -> None:
    with pytest.raises(ConditionError, match="unknown segment 'later'") as info:
        compile_segments({"first": {"segment": "later"}, "later": {"path": "/"}}, 0.005)
    assert info.value.path == ("segments", "first", "segment")


def test_self_reference_is_unknown() -> None:
    with pytest.raises(ConditionError, match="unknown segment"):
        compile_segments({"loop": {"not": "loop"}}, 0.005)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "spec, message, path",
    [
        ({"pathh": "/"}, "unknown field 'pathh'", ("pathh",)),
        ({"query.": "x"}, "unknown field", ("query.",)),
        ({"visitz": 1}, "unknown field", ("visitz",)),
        ({"path": {"equals": "/"}}, "unknown operator 'equals'", ("path", "equals")),
        ({"path": {"regex": "."}}, "unknown operator", ("path", "regex")),
        ("nobody", "unknown segment 'nobody'", ()),
        ({"segment": "nobody"}, "unknown segment", ("segment",)),
        ({"segment": ["a"]}, "unknown segment", ("segment",)),
        ({"path": {"in": "/a"}}, "takes a list", ("path", "in")),
        ({"path": {"not_in": "/a"}}, "takes a list", ("path", "not_in")),
        ({"visits": {"gt": "3"}}, "takes a number", ("visits", "gt")),
        ({"visits": {"lte": True}}, "takes a number", ("visits", "lte")),
        ({"path": {"prefix": 1}}, "takes a string", ("path", "prefix")),
        ({"path": {"contains": None}}, "takes a string", ("path", "contains")),
        ({"path": {"matches": 1}}, "regular expression string", ("path", "matches")),
        ({"path": {"matches": "(unclosed"}}, "invalid regular expression", ("path", "matches")),
        ({"path": {"matches": "[z-a]"}}, "invalid regular expression", ("path", "matches")),
        ({"path": {}}, "empty operator mapping", ("path",)),
        ({"path": ["/a", "/b"]}, "needs an operator", ("path",)),
        ({}, "non-empty mapping", ()),
        (None, "non-empty mapping", ()),
        (3, "non-empty mapping", ()),
        ({"all": []}, "non-empty list", ("all",)),
        ({"any": {"path": "/"}}, "non-empty list", ("any",)),
        ({"all": [{"path": "/"}, {"bogus": 1}]}, "unknown field 'bogus'", ("all", 1, "bogus")),
        ({"not": {"any": [{"path": {"gt": "x"}}]}}, "takes a number", ("not", "any", 0, "path", "gt")),
        ({"viewed": 3}, "'viewed' takes", ("viewed",)),
        ({"viewed": {"path": "/a", "prefix": "/b"}}, "'viewed' takes", ("viewed",)),
        ({"viewed": {"paths": "/a"}}, "'viewed' takes", ("viewed",)),
        ({"viewed": {"path": 1}}, "needs a path string", ("viewed",)),
        ({"viewed": {"path": "/a", "times": 0}}, "'times'", ("viewed", "times")),
        ({"viewed": {"path": "/a", "times": "2"}}, "'times'", ("viewed", "times")),
        ({"goal_completed": 1}, "'goal_completed' takes", ("goal_completed",)),
        ({"goal_completed": {"gt": "a"}}, "'goal_completed' takes", ("goal_completed",)),
        ({"goal_completed": {"in": [1]}}, "goal names are strings", ("goal_completed", "in")),
    ],
)
def test_errors_name_the_problem_and_the_key(spec: Any, message: str, path: tuple) -> None:
    with pytest.raises(ConditionError, match=message) as info:
        compile_condition(spec, {})
    assert info.value.path == path


def test_unknown_field_lists_the_known_ones() -> None:
    with pytest.raises(ConditionError) as info:
        compile_condition({"utm_sauce": "x"}, {})
    assert "utm_source" in str(info.value) and "query.<name>" in str(info.value)


# ---------------------------------------------------------------- ReDoS


@pytest.mark.parametrize("pattern", [r"^(a+)+$", r"^(a|a)*$", r"^(a|aa)+$", r"(.*a){20}$"])
def test_redos_pattern_returns_false(pattern: str) -> None:
    condition = compile_condition({"query.q": {"matches": pattern}}, {}, regex_timeout=0.005)
    request = ctx(query="q=" + "a" * 40 + "!")
    assert condition(request, None, NOW) is False  # returned at all: the regex was bounded


def test_timed_out_regex_logs_where_it_is(caplog: pytest.LogCaptureFixture) -> None:
    condition = compile_condition({"query.q": {"matches": r"^(a|a)*$"}}, {}, ("segments", "slow"), 0.001)
    with caplog.at_level(logging.WARNING, logger="personalize_mw"):
        assert condition(ctx(query="q=" + "a" * 60 + "!"), None, NOW) is False
    assert "segments.slow.query.q.matches" in caplog.text
    # A normal value still matches with the same compiled condition.
    assert condition(ctx(query="q=aaa"), None, NOW) is True


def test_a_regex_that_times_out_on_every_request_logs_once_in_ten_seconds(caplog: pytest.LogCaptureFixture) -> None:
    condition = compile_condition({"query.q": {"matches": r"^(a|a)*$"}}, {}, ("segments", "slow"), 0.001)
    with caplog.at_level(logging.WARNING, logger="personalize_mw"):
        for _ in range(20):
            assert condition(ctx(query="q=" + "a" * 60 + "!"), None, NOW) is False
    assert sum("timed out" in r.getMessage() for r in caplog.records) == 1


def test_a_throttle_reports_what_it_held_back() -> None:
    from personalize_mw.throttle import Throttle

    now = [0.0]
    throttle = Throttle(10.0, clock=lambda: now[0])
    assert throttle.ready() == 0
    assert [throttle.ready() for _ in range(3)] == [None, None, None]
    now[0] = 10.0
    assert throttle.ready() == 3 and throttle.ready() is None


def test_matches_sees_only_the_first_1024_characters() -> None:
    condition = compile_condition({"query.q": {"matches": "END"}}, {})
    assert not condition(ctx(query="q=" + "x" * 2000 + "END"), None, time.time())
    assert condition(ctx(query="q=" + "x" * 10 + "END"), None, time.time())


def test_in_with_a_mapping_among_its_members_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConditionError, match="'in' takes a list of plain values") as info:
        compile_condition({"utm_source": {"in": [{"a": 1}]}}, {})
    assert info.value.path == ("utm_source", "in")
