"""Consent readers: every source, fail-closed on garbage, Sec-GPC, modes, mapping overrides."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from conftest import DiscardingQueue

from personalize_mw.config import ConsentConfig, load_config
from personalize_mw.core.consent import Consent, ConsentReader, encode_own
from personalize_mw.core.context import RequestContext
from personalize_mw.core.cookies import MAX_COOKIE_HEADER, UNREADABLE, parse_cookie_header
from personalize_mw.core.personalizer import Personalizer


def reader(**config: Any) -> ConsentReader:
    return ConsentReader(ConsentConfig.model_validate(config))


def grants(consent: Consent) -> tuple[bool, bool, bool]:
    return consent.analytics, consent.personalization, consent.advertising


def cc_cookie(categories: Any, encode: bool = True) -> str:
    value = json.dumps({"categories": categories, "revision": 0, "data": None,
                        "consentId": "6d1c-…", "services": {"analytics": []}})
    return quote(value) if encode else value


def klaro(services: dict[str, Any]) -> str:
    return quote(json.dumps(services))


def onetrust(groups: str) -> str:
    return ("isGpcEnabled=0&datestamp=Mon+Nov+24+2025+10%3A00%3A00+GMT%2B0100&version=202409.1.0"
            f"&isIABGlobal=false&hosts=&landingPath=NotLandingPage&groups={quote(groups)}&AwaitingReconsent=false")


# ---------------------------------------------------------------- each source


@pytest.mark.parametrize(
    "flags",
    [(True, True, True), (True, False, False), (False, True, False), (False, False, True), (False, False, False)],
)
def test_own_cookie(flags: tuple[bool, bool, bool]) -> None:
    consent = reader().read({"pmw_consent": encode_own(*flags)}, None)
    assert grants(consent) == flags
    assert consent.source == "own"


def test_own_cookie_through_the_cookie_header_and_order_of_keys() -> None:
    cookies = parse_cookie_header('theme=dark; pmw_consent="advertising=0&personalization=1&analytics=1"; x=1')
    assert grants(reader().read(cookies, None)) == (True, True, False)


def test_own_cookie_name_is_configurable() -> None:
    r = reader(cookie_name="site_consent")
    assert grants(r.read({"site_consent": encode_own(True, True, True)}, None)) == (True, True, True)
    assert r.read({"pmw_consent": encode_own(True, True, True)}, None).source == "default"


@pytest.mark.parametrize("encode", [True, False])
def test_cc_cookie_categories(encode: bool) -> None:
    consent = reader().read({"cc_cookie": cc_cookie(["necessary", "analytics", "functionality"], encode)}, None)
    assert grants(consent) == (True, True, False)
    assert consent.source == "cc_cookie"
    consent = reader().read({"cc_cookie": cc_cookie(["necessary", "marketing"])}, None)
    assert grants(consent) == (False, False, True)
    assert grants(reader().read({"cc_cookie": cc_cookie(["necessary"])}, None)) == (False, False, False)


def test_klaro_services() -> None:
    consent = reader().read({"klaro": klaro({"analytics": True, "personalization": True, "advertising": False})}, None)
    assert grants(consent) == (True, True, False)
    assert consent.source == "klaro"
    # A service missing from the cookie is not granted.
    assert grants(reader().read({"klaro": klaro({"analytics": True})}, None)) == (True, False, False)


def test_onetrust_groups() -> None:
    consent = reader().read({"OptanonConsent": onetrust("C0001:1,C0002:1,C0003:0,C0004:1")}, None)
    assert grants(consent) == (True, False, True)
    assert consent.source == "onetrust"
    consent = reader().read({"OptanonConsent": onetrust("C0001:1,C0002:0,C0003:1,C0004:0")}, None)
    assert grants(consent) == (False, True, False)


def test_onetrust_through_a_real_cookie_header() -> None:
    header = f"OptanonAlertBoxClosed=2025-11-24T09:00:00.000Z; OptanonConsent={onetrust('C0001:1,C0002:1,C0003:1')}"
    assert grants(reader().read(parse_cookie_header(header), None)) == (True, True, False)


def test_first_configured_source_present_wins() -> None:
    cookies = {"pmw_consent": encode_own(False, False, False), "klaro": klaro({"analytics": True})}
    assert reader().read(cookies, None).source == "own"
    consent = reader(sources=["klaro", "own"]).read(cookies, None)
    assert consent.source == "klaro" and consent.analytics


def test_source_not_configured_is_not_read() -> None:
    consent = reader(sources=["own"]).read({"klaro": klaro({"analytics": True, "personalization": True})}, None)
    assert grants(consent) == (False, False, False)
    assert consent.source == "default"


# ---------------------------------------------------------------- fail closed

GARBAGE: dict[str, list[str]] = {
    "pmw_consent": [
        "", "yes", "analytics=1", "analytics=1&personalization=1", "analytics=1&personalization=1&advertising=2",
        "analytics=1&personalization=1&advertising=1&extra=1", "analytics=1&analytics=1&personalization=1",
        "analytics=true&personalization=true&advertising=true", "%00", "a" * 5000,
    ],
    "cc_cookie": [
        "", "{", "null", "[]", '"categories"', quote('{"categories": "analytics"}'), quote('{"categories": [1, 2]}'),
        quote('{"level": ["analytics"]}'), quote('{"categories": {"analytics": true}}'), "%7B%ZZ", "[" * 3000,
        quote(json.dumps({"categories": ["analytics"], "pad": "x" * 5000})),
    ],
    "klaro": [
        "", "{", "null", "true", quote('["analytics"]'), quote('{"analytics": 1}'), quote('{"analytics": "true"}'),
        quote('{"analytics": true, "personalization": null}'), "[" * 3000,
    ],
    "OptanonConsent": [
        "", "garbage", "groups=", "groups=C0002", "groups=C0002:yes", "groups=C0002:1,C0003", "groups=:1",
        "groups=C0002:1,,C0003:1", "datestamp=x&version=1", "groups=C0002:1%2CC0003:2",
    ],
}
SOURCE_OF = {"pmw_consent": "own", "cc_cookie": "cc_cookie", "klaro": "klaro", "OptanonConsent": "onetrust"}


@pytest.mark.parametrize("mode", ["opt-in", "opt-out"])
@pytest.mark.parametrize(
    "cookie, value", [(cookie, value) for cookie, values in GARBAGE.items() for value in values]
)
def test_garbage_is_denied_for_every_source_and_mode(mode: str, cookie: str, value: str) -> None:
    consent = reader(mode=mode).read({cookie: value}, None)
    assert grants(consent) == (False, False, False)
    assert consent.source == SOURCE_OF[cookie] + ":unreadable"


def test_garbage_in_first_source_does_not_fall_through_to_a_grant() -> None:
    cookies = {"pmw_consent": "nonsense", "klaro": klaro({"analytics": True, "personalization": True})}
    assert grants(reader().read(cookies, None)) == (False, False, False)


# ---------------------------------------------------------------- Sec-GPC and modes


def test_sec_gpc_exactly_one_withdraws_advertising() -> None:
    cookies = {"pmw_consent": encode_own(True, True, True)}
    consent = reader().read(cookies, "1")
    assert grants(consent) == (True, True, False)
    assert consent.gpc and consent.record()["gpc"] is True


@pytest.mark.parametrize("value", [None, "", "1 ", " 1", "true", "0", "yes", "01", "1,1"])
def test_sec_gpc_other_values_are_ignored(value: str | None) -> None:
    consent = reader().read({"pmw_consent": encode_own(True, True, True)}, value)
    assert grants(consent) == (True, True, True)
    assert not consent.gpc


def test_opt_in_default_is_nothing() -> None:
    consent = reader().read({"theme": "dark"}, None)
    assert grants(consent) == (False, False, False)
    assert consent.source == "default"


def test_opt_out_default_is_everything_until_refused() -> None:
    r = reader(mode="opt-out")
    assert grants(r.read({}, None)) == (True, True, True)
    assert grants(r.read({}, "1")) == (True, True, False)
    assert r.read({}, "1").gpc
    assert grants(r.read({"pmw_consent": encode_own(False, False, False)}, None)) == (False, False, False)


def test_opt_in_with_gpc_and_no_cookie_records_the_signal() -> None:
    consent = reader().read({}, "1")
    assert grants(consent) == (False, False, False)
    assert consent.gpc


def test_record_shape() -> None:
    consent = reader().read({"pmw_consent": encode_own(True, False, True)}, None)
    assert consent.record() == {"analytics": True, "personalization": False, "advertising": True, "gpc": False}


# ---------------------------------------------------------------- mapping overrides


def test_cc_cookie_mapping_override() -> None:
    r = reader(mapping={"cc_cookie": {"analytics": ["stats"], "personalization": ["prefs"]}})
    consent = r.read({"cc_cookie": cc_cookie(["necessary", "stats", "prefs", "marketing"])}, None)
    # The override replaces the default names: "marketing" no longer means advertising.
    assert grants(consent) == (True, True, False)
    assert grants(r.read({"cc_cookie": cc_cookie(["analytics", "functionality"])}, None)) == (False, False, False)


def test_klaro_mapping_override() -> None:
    r = reader(mapping={"klaro": {"analytics": ["matomo", "plausible"], "personalization": ["recommendations"],
                                  "advertising": ["google-ads"]}})
    consent = r.read({"klaro": klaro({"plausible": True, "recommendations": True, "google-ads": False})}, None)
    assert grants(consent) == (True, True, False)


def test_onetrust_mapping_override() -> None:
    r = reader(mapping={"onetrust": {"analytics": ["C0007"], "personalization": ["C0002"], "advertising": []}})
    consent = r.read({"OptanonConsent": onetrust("C0001:1,C0002:1,C0004:1,C0007:1")}, None)
    assert grants(consent) == (True, True, False)


def test_mapping_with_unknown_category_is_rejected() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ConsentConfig.model_validate({"mapping": {"klaro": {"marketing": ["ads"]}}})
    with pytest.raises(ValidationError):
        ConsentConfig.model_validate({"sources": ["iab_tcf"]})


REFUSE = "pmw_consent=analytics=0&personalization=0&advertising=0"
GRANT = "pmw_consent=analytics=1&personalization=1&advertising=1"


@pytest.mark.parametrize("header", [f"{REFUSE}; {GRANT}", f"{GRANT}; {REFUSE}",
                                    f"__Host-{REFUSE}; {GRANT}", f"{GRANT}; __Host-{REFUSE}"])
def test_a_refusal_wins_over_a_grant_whatever_the_order(header: str) -> None:
    # A sibling subdomain can add a parent-domain pmw_consent the browser sends beside ours.
    for mode in ("opt-in", "opt-out"):
        reader = ConsentReader(ConsentConfig(mode=mode))
        consent = reader.read(parse_cookie_header(header), None)
        assert (consent.analytics, consent.personalization, consent.advertising) == (False, False, False)


def test_two_grants_grant() -> None:
    header = f"{GRANT}; __Host-{GRANT}"
    consent = ConsentReader(ConsentConfig()).read(parse_cookie_header(header), None)
    assert consent.personalization and consent.analytics


def test_answers_read_again_are_those_of_their_own_values() -> None:
    """Consent is parsed once per distinct cookie values and GPC signal, never mixed up between them."""
    r = reader(sources=["own", "onetrust"], mapping={"onetrust": {"personalization": ["C0003"]}})
    grant, deny = encode_own(True, True, True), encode_own(False, False, False)
    sequence = [({"pmw_consent": grant}, None), ({"pmw_consent": deny}, None), ({"pmw_consent": grant}, "1"),
                ({"pmw_consent": grant}, None), ({"__Host-pmw_consent": grant, "pmw_consent": deny}, None),
                ({"OptanonConsent": onetrust("C0003:1")}, None), ({"OptanonConsent": onetrust("C0003:0")}, None),
                ({"pmw_consent": "x" * 2000}, None)]
    first = [r.read(cookies, gpc) for cookies, gpc in sequence]
    again = [r.read(cookies, gpc) for cookies, gpc in reversed(sequence)][::-1]
    assert first == again
    assert [grants(c) for c in first] == [(True, True, True), (False, False, False), (True, True, False),
                                          (True, True, True), (False, False, False), (False, True, False),
                                          (False, False, False), (False, False, False)]
    assert first[-1].source == "own:unreadable"


def test_a_header_naming_none_of_the_wanted_cookies_is_not_split_and_a_long_one_still_fails_closed() -> None:
    wanted = ("pmw_consent", "pmw_id")
    assert parse_cookie_header("_ga=GA1.1.1; theme=dark", wanted) == {}
    found = parse_cookie_header(f"_ga=GA1.1.1; {GRANT}; theme=dark", wanted)
    assert found == parse_cookie_header(f"_ga=GA1.1.1; {GRANT}; theme=dark")  # named: read whole, as without
    assert found["theme"] == "dark"
    assert parse_cookie_header("x" * (MAX_COOKIE_HEADER + 1), wanted) is UNREADABLE  # the refusal may be in it


def test_the_middleware_reads_a_cookie_header_only_for_its_own_cookies(make_core_config: Any) -> None:
    core = Personalizer(load_config(make_core_config()), queue=DiscardingQueue())  # type: ignore[arg-type]
    for header in ("_ga=1; theme=dark", f"_ga=1; {GRANT}", f"_ga=1; __Host-{GRANT}; pmw_id=x"):
        seen = core.read_visitor(RequestContext("GET", "https", "example.com", "/", "", {"cookie": header}))
        full = parse_cookie_header(header)
        assert {name: seen.cookies.get(name) for name in core._our_cookies} == {
            name: full.get(name) for name in core._our_cookies}
        assert seen.consent == core.consent_reader.read(full, None)
