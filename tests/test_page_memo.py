"""Filled pages remembered by what decides them, with a profile or without: what a fresh fill makes, or nothing kept."""

from __future__ import annotations

from typing import Any

import pytest
import regex
from conftest import ADAPTER_CONSENT, CORE_SECRET, DiscardingQueue
from hypothesis import given, settings
from hypothesis import strategies as st

from personalize_mw.config import load_config
from personalize_mw.core import page_memo
from personalize_mw.core import personalizer as personalizer_module
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Outcome, Personalizer
from personalize_mw.core.visitor import Profile
from personalize_mw.rules.slot import SlotDecider

NOW = 1_800_000_000.0


# Decisions by request fields (UTM, device, country, query), an experiment (unenrolled without an id),
# static HTML, templates keyed by request fields, one showing the block's default, one slot used twice.
SLOTS: dict[str, Any] = {
    "hero": {"rules": [{"if": {"utm_source": "linkedin"}, "variant": "social",
                        "template": "<b>{{ request.utm.campaign }}</b>"},
                       {"if": {"device": "mobile"}, "variant": "app", "template": "<i>app</i>"}]},
    "proof": {"holdout": 0.5, "rules": [{"if": {"country": {"in": ["DE", "AT"]}}, "variant": "dach",
                                         "template": "{{ request.country }}: {{ slot.default }}"}]},
    "cta": {"rules": [{"if": {"query.plan": "pro"}, "variant": "pro", "template": "<a>Pro</a>"},
                      {"if": {"path_prefix": "/"}, "variant": "any", "template": "{{ request.path }}"}]},
}


def core(slots: dict[str, Any] | None = None, **overrides: Any) -> Personalizer:
    # A render cut short by the clock shows the default: a loaded machine must not make two fills differ.
    config = {"secret_keys": [CORE_SECRET], "sink": "jsonl:/dev/null", "slots": slots or SLOTS,
              "render": {"timeout_ms": 10_000}, **overrides}
    return Personalizer(load_config(config), queue=DiscardingQueue())  # type: ignore[arg-type]


def page(default: str = "<i>proof é</i>", filler: str = "") -> bytes:
    return (f"<html><body>{filler}<!-- personalize:hero -->H<!-- /personalize:hero -->"
            f"<!-- personalize:proof -->{default}<!-- /personalize:proof -->"
            "<!-- personalize:cta -->C<!-- /personalize:cta -->"
            "<!-- personalize:unknown -->U<!-- /personalize:unknown -->"
            "<!-- personalize:hero -->H2<!-- /personalize:hero --></body></html>").encode()


def request(query: str = "", country: str | None = None, mobile: bool = False, path: str = "/",
            cookie: str | None = None) -> RequestContext:
    headers = {"user-agent": "Mozilla/5.0 (iPhone; Mobile)" if mobile else "Mozilla/5.0 (X11)"}
    if country is not None:
        headers["cf-ipcountry"] = country
    if cookie is not None:
        headers["cookie"] = cookie
    return RequestContext("GET", "https", "example.com", path, query, headers)


def seen(outcome: Outcome) -> tuple[Any, ...]:
    """Everything of an outcome a visitor or an analyst sees."""
    return outcome.body, outcome.private, outcome.varies, outcome.records, outcome.cookies, outcome.headers


WARM = core()


@settings(max_examples=300, deadline=None)
@given(source=st.sampled_from(["", "linkedin", "x"]), campaign=st.sampled_from(["", "q3", "é"]),
       plan=st.sampled_from(["", "pro", "free"]), country=st.sampled_from([None, "DE", "FR"]),
       mobile=st.booleans(), path=st.sampled_from(["/", "/a"]), default=st.sampled_from(["", "<i>d</i>", "ü"]),
       charset=st.sampled_from(["utf-8", "iso-8859-1"]))
def test_a_remembered_page_is_the_page_a_fresh_fill_makes(
        source: str, campaign: str, plan: str, country: str | None, mobile: bool, path: str, default: str,
        charset: str) -> None:
    params = [("utm_source", source), ("utm_campaign", campaign), ("plan", plan)]
    query = "&".join(f"{k}={v}" for k, v in params if v)
    body = page(default)

    def visit(personalizer: Personalizer) -> tuple[Any, ...]:
        return seen(personalizer.visit(request(query, country, mobile, path), body, NOW, charset=charset))

    fresh = visit(core())  # never saw a request: filled the long way
    assert visit(WARM) == fresh  # filled or remembered, whatever came before
    assert visit(WARM) == fresh  # remembered now


def test_the_second_page_is_served_without_scanning_deciding_or_rendering(monkeypatch: pytest.MonkeyPatch) -> None:
    personalizer = core()
    first = seen(personalizer.visit(request("utm_source=linkedin&utm_campaign=q3", "DE"), page(), NOW))
    assert first[0] is not None and len(first[3]) == 1 + 3  # the pageview and three exposures

    def refuse(*args: object) -> Any:
        raise AssertionError("the remembered page was filled again")

    for name in ("find_blocks", "blocks_of"):
        monkeypatch.setattr(personalizer_module, name, refuse)
    monkeypatch.setattr(page_memo, "replace_blocks", refuse)
    monkeypatch.setattr(personalizer.renderer, "render", refuse)
    monkeypatch.setattr(SlotDecider, "decide", refuse)
    again = seen(personalizer.visit(request("utm_source=linkedin&utm_campaign=q3", "DE"), page(), NOW))
    assert again == first
    assert again[3][1] is not first[3][1]  # the records are this request's own
    # The page's bytes, not its length, are the key: another page of the same length is filled.
    other = page().replace(b"H2", b"h2")
    assert len(other) == len(page())
    with pytest.raises(AssertionError, match="filled again"):
        personalizer.visit(request("utm_source=linkedin&utm_campaign=q3", "DE"), other, NOW)


def test_another_value_of_a_field_a_decision_or_a_template_reads_is_filled_again() -> None:
    personalizer = core()
    base = personalizer.visit(request("utm_source=linkedin&utm_campaign=q3"), page(), NOW).body
    assert base is not None and b"<b>q3</b>" in base
    changed = personalizer.visit(request("utm_source=linkedin&utm_campaign=q4"), page(), NOW).body  # template
    assert changed is not None and b"<b>q4</b>" in changed
    mobile = personalizer.visit(request("", mobile=True), page(), NOW).body  # decision
    assert mobile is not None and b"<i>app</i>" in mobile and b"<b>" not in mobile
    assert personalizer.visit(request("utm_source=linkedin&utm_campaign=q3"), page(), NOW).body == base


@pytest.mark.parametrize("slots", [
    {"hero": {"rules": [{"if": {"hour": {"gte": 0}}, "variant": "a", "template": "<b>a</b>"}]}},  # the clock
    {"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "a",
                         "template": "{{ visitor.traits.plan | default('x') }}"}]}},  # merge fields
    {"hero": {"strategy": "split", "variants": [{"variant": "a", "template": "<b>a</b>"},
                                                {"variant": "b", "template": "<b>b</b>"}]}},
], ids=["clock", "merge-fields", "split"])
def test_a_page_whose_filling_is_not_a_function_of_the_request_is_filled_each_time(
        slots: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    personalizer = core(slots)
    decided: list[object] = []
    decide = SlotDecider.decide
    monkeypatch.setattr(SlotDecider, "decide", lambda *args: decided.append(args) or decide(*args))
    body = b"<!-- personalize:hero -->d<!-- /personalize:hero -->"
    for _ in range(3):
        personalizer.visit(request(), body, NOW)
    assert len(decided) == 3


def test_a_strategy_that_raised_leaves_the_page_unremembered(monkeypatch: pytest.MonkeyPatch) -> None:
    personalizer = core({"hero": {"rules": [{"if": {"device": "mobile"}, "variant": "a", "template": "<b>a</b>"}]}})
    slot = personalizer.slots["hero"]
    body = b"<!-- personalize:hero -->d<!-- /personalize:hero -->"
    decide = slot._single

    def flaky(*args: Any) -> Any:
        raise RuntimeError("state store down")

    monkeypatch.setattr(slot, "_single", flaky)
    assert personalizer.visit(request(mobile=True), body, NOW).body is None  # the default, this once
    monkeypatch.setattr(slot, "_single", decide)
    assert personalizer.visit(request(mobile=True), body, NOW).body == (
        b"<!-- personalize:hero --><b>a</b><!-- /personalize:hero -->")


def test_debug_is_filled_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    remembered: list[object] = []
    personalizer = core(debug=True)
    monkeypatch.setattr(personalizer.page_memo, "remember", lambda *args: remembered.append(args))
    monkeypatch.setattr(page_memo.Page, "filled", lambda *args: remembered.append(args))
    assert personalizer.visit(request(), page(), NOW).body is not None
    assert remembered == []


# Decisions by profile fields (a page viewed, a goal, visits, days since the first visit, the session's
# channel) mixed with request fields in Kleene-sensitive ways, and templates reading visitor fields.
PROFILE_SLOTS: dict[str, Any] = {
    "hero": {"rules": [{"if": "customer", "variant": "customer", "template": "<b>welcome back</b>"},
                       {"if": {"all": ["pricing", {"device": "desktop"}]}, "variant": "demo",
                        "template": "{{ visitor.visits }} visits, {{ request.utm.source }}"},
                       {"if": {"not": {"visits": {"lt": 2}}}, "variant": "regular", "template": "<i>regular</i>"}]},
    "cta": {"rules": [{"if": {"any": [{"days_since_first_visit": {"gte": 30}}, {"utm_source": "li"}]},
                       "variant": "loyal", "template": "{{ visitor.days_since_first_visit }} days"},
                      {"if": {"channel": "social"}, "variant": "social", "template": "<a>social</a>"}]},
    "proof": {"rules": [{"if": {"all": ["pricing", {"viewed": {"path": "/pricing", "times": 2}}]},
                         "variant": "twice", "template": "{{ slot.default }}!"}]},
}
PROFILE_SEGMENTS = {"customer": {"goal_completed": "signup"}, "pricing": {"viewed": "/pricing"}}
PROFILE_WARM = core(PROFILE_SLOTS, segments=PROFILE_SEGMENTS)


def profile_page() -> bytes:
    return b"".join(f"<!-- personalize:{n} -->{n}<!-- /personalize:{n} -->".encode()
                    for n in ("hero", "cta", "proof", "hero"))


def fill(personalizer: Personalizer, ctx: RequestContext, profile: Profile | None) -> tuple[Any, ...]:
    outcome = Outcome()
    personalizer._fill(profile_page(), ctx, profile, NOW, {"visitor_id": "v"}, outcome, "utf-8")
    return outcome.body, outcome.private, outcome.varies, outcome.records


@settings(max_examples=300, deadline=None)
@given(pricing_views=st.integers(0, 3), goals=st.sampled_from([[], ["signup"], ["demo"]]), visits=st.integers(1, 3),
       age_days=st.sampled_from([0, 29.9, 30, 400]), channel=st.sampled_from([None, "social", "direct"]),
       source=st.sampled_from(["", "li", "x"]), mobile=st.booleans(), with_profile=st.booleans())
def test_a_page_remembered_for_a_visitor_with_a_profile_is_the_page_a_fresh_fill_makes(
        pricing_views: int, goals: list[str], visits: int, age_days: float, channel: str | None, source: str,
        mobile: bool, with_profile: bool) -> None:
    def visit(personalizer: Personalizer) -> tuple[Any, ...]:
        profile = Profile("v1", visits=visits, first_seen=int(NOW - age_days * 86400), last_seen=int(NOW),
                          paths=["/a", *["/pricing"] * pricing_views], goals=list(goals), session_channel=channel)
        return fill(personalizer, request(f"utm_source={source}" if source else "", mobile=mobile),
                    profile if with_profile else None)

    fresh = visit(core(PROFILE_SLOTS, segments=PROFILE_SEGMENTS))  # never saw a request: filled the long way
    assert visit(PROFILE_WARM) == fresh  # filled or remembered, whatever came before
    assert visit(PROFILE_WARM) == fresh  # remembered now


def test_a_visitor_with_a_profile_is_served_the_second_page_without_deciding_or_rendering(
        monkeypatch: pytest.MonkeyPatch) -> None:
    personalizer = core(PROFILE_SLOTS, segments=PROFILE_SEGMENTS)
    returning = Profile("v1", visits=3, first_seen=int(NOW - 40 * 86400), paths=["/pricing"])
    first = fill(personalizer, request("utm_source=li"), returning)
    assert first[0] is not None and b"3 visits, li" in first[0] and b"40 days" in first[0]

    def refuse(*args: object) -> Any:
        raise AssertionError("the remembered page was filled again")

    monkeypatch.setattr(personalizer.renderer, "render", refuse)
    monkeypatch.setattr(SlotDecider, "_decide", refuse)
    other_person = Profile("v2", visits=3, first_seen=int(NOW - 40 * 86400), paths=["/b", "/pricing"])
    again = fill(personalizer, request("utm_source=li"), other_person)
    assert again == first
    # What a template shows (the visits) and what a test answers (a goal reached) are filled again.
    for changed in (Profile("v3", visits=4, first_seen=int(NOW - 40 * 86400), paths=["/pricing"]),
                    Profile("v4", visits=3, first_seen=int(NOW - 40 * 86400), paths=["/pricing"], goals=["signup"])):
        with pytest.raises(AssertionError, match="filled again"):
            fill(personalizer, request("utm_source=li"), changed)


def test_an_experiments_arm_for_a_visitor_with_an_id_is_decided_each_time(monkeypatch: pytest.MonkeyPatch) -> None:
    personalizer = core()  # SLOTS: proof has a holdout
    decided: list[object] = []
    decide = SlotDecider._decide
    monkeypatch.setattr(SlotDecider, "_decide", lambda *args: decided.append(args[0].name) or decide(*args))
    for n in range(3):
        outcome = Outcome()
        personalizer._fill(page(), request(country="DE"), Profile(f"v{n}"), NOW, {}, outcome, "utf-8")
        assert outcome.body is not None
    assert decided.count("proof") == 3
    arms = {r["arm"] for n in range(40) for r in core().visit(
        request(country="DE", cookie=ADAPTER_CONSENT), page(), NOW).records if r.get("slot") == "proof"}
    assert arms == {"holdout", "treatment"}  # each visitor's own arm, by id


def test_a_failed_decision_is_not_remembered_when_another_thread_kept_its_own_meanwhile(
        monkeypatch: pytest.MonkeyPatch) -> None:
    personalizer = core({"hero": {"rules": [{"if": {"device": "mobile"}, "variant": "a", "template": "<b>a</b>"}]}})
    slot = personalizer.slots["hero"]
    body = b"<!-- personalize:hero -->d<!-- /personalize:hero -->"
    shown = b"<!-- personalize:hero --><b>a</b><!-- /personalize:hero -->"
    decide = slot._single

    def other_request_then_fail(*args: Any) -> Any:
        monkeypatch.setattr(slot, "_single", decide)  # another thread's request for the same values, meanwhile
        assert personalizer.visit(request(mobile=True), body, NOW).body == shown
        raise RuntimeError("state store down")  # and this request's strategy fails

    monkeypatch.setattr(slot, "_single", other_request_then_fail)
    assert personalizer.visit(request(mobile=True), body, NOW).body is None  # this request: the default
    for _ in range(2):
        assert personalizer.visit(request(mobile=True), body, NOW).body == shown  # the others: the variant


def test_a_page_that_changes_on_every_response_does_not_push_the_others_out() -> None:
    personalizer = core()
    ctx = "utm_source=linkedin&utm_campaign=q3"
    home = personalizer.visit(request(ctx), page(), NOW).body
    for n in range(3000):  # the same length every time, other bytes (a CSP nonce, a CSRF token)
        personalizer.visit(request(ctx), page(filler=f"<meta nonce='{n:08d}'>"), NOW)
    kept = personalizer.page_memo._pages[(len(page()), None)]
    assert kept.body == page() and kept.decision_key is not None
    assert kept.filled(kept.decision_key.of(request(ctx), None, NOW), request(ctx), None, NOW) is not None
    assert personalizer.visit(request(ctx), page(), NOW).body == home


def test_a_block_rendered_for_one_person_leaves_no_page_behind() -> None:
    personalizer = core({"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "a",
                                             "template": "Hi {{ visitor.traits.name | default('you') }}"}]}})
    body = b"<!-- personalize:hero -->d<!-- /personalize:hero -->"
    outcome = Outcome()
    personalizer._fill(body, request(), None, NOW, {}, outcome, "utf-8", traits={"name": "Alice"})
    assert outcome.body == b"<!-- personalize:hero -->Hi Alice<!-- /personalize:hero -->"
    assert all(not p.spliced and not p.by_decisions for p in personalizer.page_memo._pages.values())


def test_a_page_the_app_may_change_afterwards_is_not_kept() -> None:
    personalizer = core()
    body = bytearray(page())
    first = personalizer.visit(request("utm_source=linkedin"), body, NOW).body  # type: ignore[arg-type]
    body[:] = page("<i>chang é</i>")
    assert first is not None
    assert personalizer.visit(request("utm_source=linkedin"), body, NOW).body == (  # type: ignore[arg-type]
        core().visit(request("utm_source=linkedin"), page("<i>chang é</i>"), NOW).body)


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(page_memo, "_MAX_BYTES", 64 * 1024)
    personalizer = core()
    for n in range(200):
        personalizer.visit(request(f"utm_source=linkedin&utm_campaign=c{n}"), page(filler="x" * (n % 7) * 300), NOW)
    memo = personalizer.page_memo
    kept = sum(len(p.body) + sum(map(len, p.spliced.values()))
               + sum(len(f.body or b"") for _, fills in p.by_decisions.values() for f in fills.values())
               for p in memo._pages.values())
    assert 0 < kept <= 64 * 1024
    huge = page(filler="x" * (page_memo._MAX_PAGE + 1))
    personalizer.visit(request(), huge, NOW)
    assert all(len(p.body) <= page_memo._MAX_PAGE for p in memo._pages.values())
    # Fillings are keyed by request values (a visitor's query string): counted, whatever their bytes.
    monkeypatch.setattr(page_memo, "_MAX_BYTES", 8 * 1024 * 1024)
    for n in range(3 * page_memo._MAX_ENTRIES):
        personalizer.visit(request(f"plan=pro&utm_source=linkedin&utm_campaign={n:0500d}"), page(), NOW)
    assert 0 < sum(len(fills) for p in memo._pages.values() for _, fills in p.by_decisions.values()) <= (
        page_memo._MAX_ENTRIES)


def test_a_page_is_scanned_once_for_every_visitor_and_a_changed_page_again(monkeypatch: pytest.MonkeyPatch) -> None:
    personalizer = core()
    changed = core().visit(request(cookie=ADAPTER_CONSENT), page("<b>x</b>"), NOW).body
    scans: list[bytes] = []
    blocks_of = personalizer_module.blocks_of
    monkeypatch.setattr(personalizer_module, "blocks_of", lambda body: scans.append(body) or blocks_of(body))
    first = personalizer.visit(request(cookie=ADAPTER_CONSENT), page(), NOW, marked=True)
    assert first.body is not None and first.cookies  # a profile: filled for this visitor, not remembered
    again = personalizer.visit(request(cookie=ADAPTER_CONSENT), bytes(bytearray(page())), NOW, marked=True)
    assert seen(again)[:3] == seen(first)[:3] and len(scans) == 1  # an equal page (another object): not scanned
    assert [(r["slot"], r["variant"], r["arm"]) for r in again.records] == [
        (r["slot"], r["variant"], r["arm"]) for r in first.records]  # each visitor's own ids
    assert personalizer.visit(request(cookie=ADAPTER_CONSENT), page("<b>x</b>"), NOW, marked=True).body == changed
    assert len(scans) == 2


def test_broken_markers_are_reported_once_and_the_page_left_as_it_came(caplog: pytest.LogCaptureFixture) -> None:
    personalizer = core()
    broken = b"<!-- personalize:hero -->never closed"
    for _ in range(2):
        assert personalizer.visit(request(), broken, NOW).body is None
    assert len([r for r in caplog.records if "left as they are" in r.getMessage()]) == 1


def test_a_profile_test_cut_short_while_keying_the_page_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    real_compile = regex.compile

    class FirstSearchTimesOut:  # the pattern's first search is cut short (a loaded machine), later ones are not
        def __init__(self, pattern: str) -> None:
            self.pattern, self.searches = real_compile(pattern), 0

        def search(self, *args: Any, **kwargs: Any) -> Any:
            self.searches += 1
            if self.searches == 1:
                raise TimeoutError("regex timed out")
            return self.pattern.search(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(regex, "compile", FirstSearchTimesOut)
        personalizer = core({"hero": {"rules": [{"if": {"channel": {"matches": "^paid"}}, "variant": "paid",
                                                 "template": "<b>paid</b>"}]}})
    body = b"<!-- personalize:hero -->d<!-- /personalize:hero -->"

    def fill(channel: str) -> bytes | None:
        outcome = Outcome()
        personalizer._fill(body, request(), Profile("v", visits=2, session_channel=channel), NOW, {}, outcome, "utf-8")
        return outcome.body

    assert fill("paid_search") == b"<!-- personalize:hero --><b>paid</b><!-- /personalize:hero -->"
    assert fill("organic") is None  # not the page the timed-out key was made for
    assert fill("paid_search") == b"<!-- personalize:hero --><b>paid</b><!-- /personalize:hero -->"


def test_a_profile_test_that_raises_while_keying_the_page_leaves_the_slots_to_decide() -> None:
    personalizer = core(PROFILE_SLOTS, segments=PROFILE_SEGMENTS)

    def broken(ctx: RequestContext, profile: Profile | None, now: float) -> bool:
        raise RuntimeError("a plug-in's test")

    hero = personalizer.slots["hero"]
    hero.profile_tests = (*(hero.profile_tests or ()), broken)
    returning = Profile("v1", visits=3, first_seen=int(NOW - 40 * 86400), paths=["/pricing"])
    fresh = fill(core(PROFILE_SLOTS, segments=PROFILE_SEGMENTS), request("utm_source=li"), returning)
    for _ in range(2):
        assert fill(personalizer, request("utm_source=li"), returning) == fresh  # filled, each time
    assert all(not page.by_decisions for page in personalizer.page_memo._pages.values())
