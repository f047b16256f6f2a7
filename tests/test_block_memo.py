"""Rendered blocks remembered for visitors without a profile: the same bytes as a fresh render, or none kept."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CORE_SECRET, DiscardingQueue
from hypothesis import given, settings
from hypothesis import strategies as st

from personalize_mw.config import load_config
from personalize_mw.core import block_memo
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Outcome, Personalizer
from personalize_mw.core.visitor import Profile
from personalize_mw.render import NO_TRAITS, VariantRenderer

NOW = 1_800_000_000.0
CONSENT = "pmw_consent=analytics=1&personalization=1&advertising=0"


# One slot per template; every rule matches, so each block is rendered (or looked up) on every page.
TEMPLATES = {
    "utm": "<b>{{ request.utm.source }}</b>{{ slot.default }}",
    "fields": "{{ request.query.q }}|{{ request.country }}|{{ request.language }}|{{ request.device }}|"
              "{{ request.path }}|{{ visitor.visits }}{{ visitor.known }}",
    "method": "{{ request.query.get('q') }}|{% for k, v in request.utm.items() %}{{ k }}={{ v }};{% endfor %}",
    "named": "{{ request.query['get'] if request.query['get'] is string else 'method' }}|"
             "{{ request.query[slot.name] }}|{{ slot.variant }}",
    "whole": "{{ request.utm }}{{ slot.name }}",
    "deep": "{{ request.utm.campaign.upper() if request.utm.campaign }}"
            "{{ request.query.q.upper() if request.query.q }}",
}


def core(**overrides: Any) -> Personalizer:
    slots = {name: {"rules": [{"if": {"path_prefix": "/"}, "variant": f"v-{name}", "template": source}]}
             for name, source in TEMPLATES.items()}
    # A render cut short by the clock shows the default: a loaded machine must not make two fills differ.
    config = {"secret_keys": [CORE_SECRET], "sink": "jsonl:/dev/null", "slots": slots,
              "render": {"timeout_ms": 10_000}, **overrides}
    return Personalizer(load_config(config), queue=DiscardingQueue())  # type: ignore[arg-type]


def page(defaults: dict[str, str] | None = None) -> bytes:
    parts = [f"<!-- personalize:{name} -->{(defaults or {}).get(name, f'<i>{name} é</i>')}<!-- /personalize:{name} -->"
             for name in TEMPLATES]
    return ("<html><body>" + "<hr>".join(parts) + "</body></html>").encode()


def request(query: str = "", country: str | None = None, language: str | None = None,
            user_agent: str = "Mozilla/5.0 (X11)", path: str = "/", cookie: str | None = None) -> RequestContext:
    headers = {"user-agent": user_agent}
    if country is not None:
        headers["cf-ipcountry"] = country
    if language is not None:
        headers["accept-language"] = language
    if cookie is not None:
        headers["cookie"] = cookie
    return RequestContext("GET", "https", "example.com", path, query, headers)


def filled(personalizer: Personalizer, ctx: RequestContext, body: bytes, charset: str = "utf-8") -> bytes | None:
    return personalizer.visit(ctx, body, NOW, charset=charset).body


WARM = core()
_TEXT = st.sampled_from(["", "a", "b", "x y", "é", "<s>", "items", "get"])


@settings(max_examples=300, deadline=None)
@given(source=_TEXT, campaign=_TEXT, q=_TEXT, get=_TEXT, named=_TEXT, extra=st.booleans(),
       country=st.sampled_from([None, "DE", "fr", "XYZ"]), language=st.sampled_from([None, "en-GB", "de"]),
       mobile=st.booleans(), path=st.sampled_from(["/", "/a", "/b/c"]),
       default=st.sampled_from(["", "<i>d</i>", "ü"]), charset=st.sampled_from(["utf-8", "iso-8859-1"]))
def test_a_remembered_block_is_the_block_a_fresh_render_makes(
        source: str, campaign: str, q: str, get: str, named: str, extra: bool, country: str | None,
        language: str | None, mobile: bool, path: str, default: str, charset: str) -> None:
    params = [("utm_source", source), ("utm_campaign", campaign), ("q", q), ("get", get), ("named", named)]
    if extra:
        params.append(("items", "1"))
    query = "&".join(f"{k}={v}" for k, v in params if v)
    ua = "Mozilla/5.0 (iPhone; Mobile)" if mobile else "Mozilla/5.0 (X11)"
    body = page({"utm": default, "named": default})

    def ctx() -> RequestContext:
        return request(query, country, language, ua, path)

    fresh = filled(core(), ctx(), body, charset)  # never saw a request: rendered
    assert fresh is not None
    assert filled(WARM, ctx(), body, charset) == fresh  # rendered or remembered, whatever came before
    assert filled(WARM, ctx(), body, charset) == fresh  # remembered now
    assert WARM.block_memo.blocks


def test_the_second_page_is_served_from_the_memo_without_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    personalizer = core()
    first = filled(personalizer, request("utm_source=a&q=1"), page())
    calls: list[object] = []
    monkeypatch.setattr(personalizer.renderer, "render", lambda *args: calls.append(args) or b"rendered")
    monkeypatch.setattr(personalizer, "_variables", lambda *args: calls.append(args) or {})
    assert filled(personalizer, request("utm_source=a&q=1"), page()) == first
    assert calls == []
    # Another value of a field a template reads: that block is rendered again, the others are not.
    other = filled(personalizer, request("utm_source=b&q=1"), page())
    # utm and whole read request.utm, method and named the whole query (utm_source=... is in it).
    assert other is not None and other.count(b"rendered") == 4
    # Another default content, in a block whose template shows it: rendered again.
    assert filled(personalizer, request("utm_source=a&q=1"), page({"utm": "new"})).count(b"rendered") == 1


@pytest.mark.parametrize("source", [
    "{{ visitor.traits.plan | default('x') }}", "{{ visitor }}", "{{ visitor.items() | list | length }}",
    "{{ request }}", "{{ request.headers }}", "{{ request.get('path') }}",
])
def test_a_template_reading_what_the_key_lacks_is_never_remembered(source: str) -> None:
    personalizer = Personalizer(load_config({
        "secret_keys": [CORE_SECRET], "sink": "jsonl:/dev/null",
        "slots": {"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "a", "template": source}]}}}),
        queue=DiscardingQueue())  # type: ignore[arg-type]
    body = b"<!-- personalize:hero -->d<!-- /personalize:hero -->"
    for _ in range(2):
        personalizer.visit(request("q=1"), body, NOW)
    assert personalizer.block_memo.blocks == {}


def test_plans_key_on_request_fields_and_the_default_only_where_read() -> None:
    renderer = VariantRenderer(4096, 1000, ["https"])

    def plan(source: str) -> block_memo.Plan:
        return block_memo.plan_of(renderer.inputs(renderer.compile(source)))

    assert plan("{{ slot.name }}{{ slot.variant }}{{ request.path }}").reads_default is False
    for source in ("{{ slot.default }}", "{{ slot['default'] }}", "{{ slot }}", "{{ slot[request.path] }}"):
        assert plan(source).reads_default is True
    assert plan("{{ visitor.traits.x }}").key is None
    assert plan("{{ request.headers }}").key is None
    ctx = request("utm_source=li&q=1", country="DE")
    key = plan("{{ request.country }}{{ request.path }}{{ request.utm.source }}").key
    assert key is not None and key(ctx) == ("li", ("DE", "/"))
    assert block_memo.plan_of(None) == block_memo.Plan(True, None)  # compiled elsewhere: reads anything


def test_what_the_memo_assumes_of_the_variables_without_a_profile() -> None:
    # plan_of keys on ctx's attributes and on these visitor fields, constants without a profile: _variables agrees.
    personalizer = core()
    one = personalizer._variables(request("utm_source=a&q=1", "DE", "de"), None, NOW)
    two = personalizer._variables(request("", None, None, "curl/8", "/x"), None, NOW + 86400 * 400)
    assert set(one) == {"visitor", "request"}
    assert one["visitor"]["traits"] is NO_TRAITS
    constants = {k: v for k, v in one["visitor"].items() if k != "traits"}
    assert set(constants) == set(block_memo.VISITOR_FIELDS) == {
        "known", "visits", "returning", "days_since_first_visit", "goals"}  # a new field: add it to the keys' tests
    assert constants == {"known": False, "visits": 0, "returning": False, "days_since_first_visit": 0, "goals": []}
    assert constants == {k: v for k, v in two["visitor"].items() if k != "traits"}
    ctx = request("utm_source=a&q=1", "DE", "de")
    variables = personalizer._variables(ctx, None, NOW)
    assert set(variables["request"]) == block_memo.REQUEST_FIELDS
    assert variables["request"] == {name: getattr(ctx, name) for name in block_memo.REQUEST_FIELDS}


VISITOR_TEMPLATES = {
    "visits": "{{ visitor.visits }} {{ 'again' if visitor.returning }} {{ request.utm.source }}",
    "days": "{{ visitor.days_since_first_visit }}|{{ visitor.known }}",
    "goals": "{% for g in visitor.goals %}{{ g }},{% endfor %}{{ slot.default }}",
}
PROFILE_CORE = Personalizer(load_config({
    "secret_keys": [CORE_SECRET], "sink": "jsonl:/dev/null", "render": {"timeout_ms": 10_000},
    "slots": {name: {"rules": [{"if": {"path_prefix": "/"}, "variant": name, "template": source}]}
              for name, source in VISITOR_TEMPLATES.items()}}), queue=DiscardingQueue())  # type: ignore[arg-type]
PROFILE_PAGE = b"".join(f"<!-- personalize:{n} -->d<!-- /personalize:{n} -->".encode() for n in VISITOR_TEMPLATES)


@settings(max_examples=200, deadline=None)
@given(visits=st.integers(0, 3), age_days=st.sampled_from([0, 0.4, 1, 29.9, 400]),
       goals=st.lists(st.sampled_from(["signup", "demo"]), max_size=2, unique=True),
       source=st.sampled_from(["", "li"]))
def test_a_block_remembered_for_a_visitor_with_a_profile_is_the_block_a_fresh_render_makes(
        visits: int, age_days: float, goals: list[str], source: str) -> None:
    def fill(personalizer: Personalizer) -> bytes | None:
        profile = Profile("v1", visits=visits, first_seen=int(NOW - age_days * 86400), goals=list(goals))
        outcome = Outcome()
        personalizer._fill(PROFILE_PAGE, request(f"utm_source={source}" if source else ""), profile, NOW, {},
                           outcome, "utf-8")
        return outcome.body

    fresh = fill(Personalizer(PROFILE_CORE.config, queue=DiscardingQueue()))  # type: ignore[arg-type]
    assert fresh is not None
    assert fill(PROFILE_CORE) == fresh  # rendered or remembered, whatever came before
    assert fill(PROFILE_CORE) == fresh
    assert PROFILE_CORE.block_memo.blocks


def test_debug_and_preview_are_rendered_each_time() -> None:
    debugging = core(debug=True)
    outcome = debugging.visit(request("q=1"), page(), NOW)
    assert outcome.body is not None and debugging.block_memo.blocks == {}


def test_a_slot_whose_decisions_are_not_remembered_keeps_no_block() -> None:
    personalizer = Personalizer(load_config({
        "secret_keys": [CORE_SECRET], "sink": "jsonl:/dev/null",
        "slots": {"hero": {"rules": [{"if": {"hour": {"gte": 0}}, "variant": "a",
                                      "template": "{{ request.path }}"}]}}}), queue=DiscardingQueue())  # type: ignore[arg-type]
    assert not personalizer.slots["hero"].remembers
    assert personalizer.visit(request(), b"<!-- personalize:hero -->d<!-- /personalize:hero -->", NOW).body
    assert personalizer.block_memo.blocks == {}


def test_a_failed_render_is_not_remembered() -> None:
    personalizer = Personalizer(load_config({
        "secret_keys": [CORE_SECRET], "sink": "jsonl:/dev/null",
        "slots": {"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "a",
                                      "template": '<a href="{{ request.query.u }}">x</a>'}]}}}),
        queue=DiscardingQueue())  # type: ignore[arg-type]
    body = b"<!-- personalize:hero -->d<!-- /personalize:hero -->"
    for _ in range(2):
        assert personalizer.visit(request("u=javascript:alert(1)"), body, NOW).body is None  # refused: default
    assert personalizer.block_memo.blocks == {}
    assert personalizer.visit(request("u=https://x"), body, NOW).body is not None
    assert len(personalizer.block_memo.blocks) == 1


def test_the_memo_is_bounded() -> None:
    personalizer = core()
    for n in range(1500):
        personalizer.visit(request(f"q={n}"), page(), NOW)
    assert 0 < len(personalizer.block_memo.blocks) <= 1024


def test_under_enrichers_a_visitor_without_a_profile_is_rendered_each_time() -> None:
    # Rendering asks every enricher, and the pageview records what was asked: no memo there.
    personalizer = core(enrichment={"weather": {"type": "python:enricher_plugins:Weather", "sky": "grey",
                                                "record": ["sky"]}})
    outcome = personalizer.visit(request("q=1"), page(), NOW)
    assert outcome.body is not None and personalizer.block_memo.blocks == {}


def test_a_visitor_with_a_profile_is_not_served_another_visitors_block() -> None:
    personalizer = Personalizer(load_config({
        "secret_keys": [CORE_SECRET], "sink": "jsonl:/dev/null",
        "slots": {"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "a",
                                      "template": "{{ visitor.visits }}"}]}}}), queue=DiscardingQueue())  # type: ignore[arg-type]
    body = b"<!-- personalize:hero -->d<!-- /personalize:hero -->"
    for _ in range(2):
        assert personalizer.visit(request(), body, NOW).body == b"<!-- personalize:hero -->0<!-- /personalize:hero -->"
    outcome = Outcome()
    personalizer._fill(body, request(), Profile("v1", visits=7), NOW, {}, outcome, "utf-8")
    assert outcome.body == b"<!-- personalize:hero -->7<!-- /personalize:hero -->"
