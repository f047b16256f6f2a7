"""A page nothing of ours changes goes out as the app made it; its records are worked out after, the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from personalize_mw.config import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.core.request_state import RequestState
from personalize_mw.touchpoints.record import finalize_batch

PLAIN = b"<html><body><p>no markers here</p></body></html>"
HEADERS = {"host": "shop.example", "referer": "https://www.linkedin.com/feed", "user-agent": "Mozilla/5.0",
           "cookie": "pmw_consent=analytics=1&personalization=0&advertising=0"}


def state_for(core: Personalizer, headers: dict[str, str], query: str = "utm_source=news&utm_medium=email",
              path: str = "/thanks") -> RequestState:
    ctx = RequestContext("GET", "https", "shop.example", path, query, headers, client="203.0.113.9")
    return RequestState(core, ctx, lambda source, _header: source)


@pytest.fixture
def core(make_core_config: Callable[..., dict[str, Any]]) -> Personalizer:
    config = make_core_config(goals={"signup": {"path": "/thanks", "value": 7}}, ip="truncate",
                              slots={"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "v",
                                                         "template": "<b>v</b>"}]}})
    return Personalizer(load_config(config), clock=lambda: 1_800_000_000.0)


def without_ids(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "id"} for r in records]


def test_the_late_records_equal_those_of_a_full_visit(core: Personalizer) -> None:
    later = core.pageview_only(state_for(core, HEADERS), PLAIN)
    assert later is not None
    quick = finalize_batch(list(later))
    full = finalize_batch(core.visit(state_for(core, HEADERS).context(), PLAIN, 1_800_000_000.0).records)
    assert [r["type"] for r in quick] == ["pageview", "conversion"]
    assert without_ids(quick) == without_ids(full)  # channel, referrer, UTM, consent, ip: all the same
    assert quick[0]["channel"] == "email" and quick[0]["ip"] == "203.0.113.0"


@pytest.mark.parametrize("change", ["personalization consent", "id cookie to expire", "preview link", "markers",
                                    "track() waiting", "debug"])
def test_whatever_changes_the_response_takes_the_full_visit(core: Personalizer, make_core_config: Callable[..., Any],
                                                            change: str) -> None:
    headers, query, body = dict(HEADERS), "", PLAIN
    if change == "personalization consent":
        headers["cookie"] = "pmw_consent=analytics=1&personalization=1&advertising=0"
    elif change == "id cookie to expire":
        headers["cookie"] += "; __Host-pmw_id=old"  # https: the prefixed name is ours
    elif change == "preview link":
        query = "pmw_preview=anything"
    elif change == "markers":
        body = b"<!-- personalize:hero -->x<!-- /personalize:hero -->"
    elif change == "debug":
        core = Personalizer(load_config(make_core_config(debug=True)))
    state = state_for(core, headers, query)
    if change == "track() waiting":
        from personalize_mw.core.events import Requested
        state.pending.append(Requested("track", 1.0, name="x"))
    assert core.pageview_only(state, body) is None


def test_a_site_with_a_learning_strategy_visits_every_page(make_core_config: Callable[..., Any]) -> None:
    crowd = {"related": {"strategy": "crowd", "crowd": {"template": "{{ items }}"}}}
    core = Personalizer(load_config(make_core_config(slots=crowd)))
    assert core.pageview_only(state_for(core, HEADERS), PLAIN) is None  # strategies see every page view


def test_through_the_middleware_the_pageview_reaches_the_sink(tmp_path: Path,
                                                              make_core_config: Callable[..., Any]) -> None:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from personalize_mw import PersonalizeMiddleware

    app = PersonalizeMiddleware(Starlette(routes=[Route("/", lambda r: HTMLResponse(PLAIN))]),
                                config=make_core_config())
    with TestClient(app) as client:
        assert client.get("/?utm_medium=cpc").content == PLAIN
    [record] = [json.loads(line) for line in (tmp_path / "touchpoints.jsonl").read_text().splitlines()]
    assert (record["type"], record["channel"], record["visitor"]) == ("pageview", "paid_search", None)


@pytest.mark.parametrize("consent", ["", "analytics=1&personalization=1&advertising=0"])
def test_records_carry_the_device_class_and_the_country_header(tmp_path: Path, consent: str,
                                                               make_core_config: Callable[..., Any]) -> None:
    """What `lift --by device|country` reads, on the quick path (no consent) and a full visit alike."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from personalize_mw import PersonalizeMiddleware

    app = PersonalizeMiddleware(Starlette(routes=[Route("/", lambda r: HTMLResponse(PLAIN))]),
                                config=make_core_config())
    headers = {"user-agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
               "cf-ipcountry": "de"}
    with TestClient(app) as client:
        if consent:
            client.cookies.set("pmw_consent", consent)
        assert client.get("/", headers=headers).content == PLAIN
        assert client.get("/", headers={"cf-ipcountry": "<script>", "user-agent": "curl/8"}).content == PLAIN
    first, second = [json.loads(line) for line in (tmp_path / "touchpoints.jsonl").read_text().splitlines()]
    assert (first["device"], first["country"]) == ("mobile", "DE")
    assert second["country"] is None  # only a two-letter code is ever a country
    assert (first["visitor"] is not None) == bool(consent)


@pytest.mark.parametrize("cookie", [None, "_ga=GA1.1.1; theme=dark", "a=" + "x" * 70_000])
@pytest.mark.parametrize("gpc", [None, "1"])
def test_a_cookie_header_without_ours_is_settled_without_parsing_and_records_the_same(
        core: Personalizer, cookie: str | None, gpc: str | None) -> None:
    """Through the adapters' own peek and copy of the request: the records equal a full visit's."""
    from personalize_mw.asgi import peek as asgi_peek
    from personalize_mw.asgi import request_context

    headers = [(b"host", b"shop.example"), (b"referer", b"https://www.linkedin.com/feed")]
    if cookie is not None:
        headers.append((b"Cookie", cookie.encode()))  # the name's case is the server's
    if gpc is not None:
        headers.append((b"sec-gpc", gpc.encode()))
    scope = {"type": "http", "method": "GET", "scheme": "https", "path": "/thanks", "headers": headers,
             "query_string": b"utm_source=news&utm_medium=email", "client": ("203.0.113.9", 1)}
    state = RequestState.of_request(core, scope, request_context, asgi_peek)
    later = core.pageview_only(state, PLAIN, "/thanks")
    assert later is not None
    assert state._ctx is None  # nothing built on the request path
    scope["headers"], scope["path"] = [], "/changed"  # a server reusing its scope after the response
    quick = finalize_batch(list(later))
    original = request_context({**scope, "headers": headers, "path": "/thanks"}, "cf-ipcountry")
    full = finalize_batch(core.visit(original, PLAIN, 1_800_000_000.0).records)
    assert [r["type"] for r in quick] == ["pageview", "conversion"]
    assert without_ids(quick) == without_ids(full)
    unreadable = cookie is not None and len(cookie) > 65_536  # consent denied whole, no signal read
    assert quick[0]["consent"]["gpc"] is (gpc == "1" and not unreadable)


@pytest.mark.parametrize("cookie", ["OptanonConsent=groups=C0003%3A1", "klaro=%7B%7D", "pmw_id=x",
                                    "pmw_consent=analytics=1&personalization=1&advertising=0"])
def test_a_cookie_consent_may_be_read_from_is_read_before_passing(make_core_config: Callable[..., Any],
                                                                  cookie: str) -> None:
    """Any cookie consent is read from (of the configured sources) or of ours takes the careful path."""
    from personalize_mw.wsgi import peek as wsgi_peek
    from personalize_mw.wsgi import request_context

    consent = {"sources": ["onetrust", "klaro", "own"],
               "mapping": {"onetrust": {"personalization": ["C0003"]}, "klaro": {"personalization": ["p"]}}}
    core = Personalizer(load_config(make_core_config(consent=consent)))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "", "HTTP_HOST": "shop.example",
               "HTTP_COOKIE": cookie, "wsgi.url_scheme": "http"}
    state = RequestState(core, environ, request_context, wsgi_peek)
    later = core.pageview_only(state, PLAIN, "/")
    assert state._visitor is not None  # consent was read on the request path
    granted = "personalization=1" in cookie or "C0003" in cookie
    assert (later is None) is (granted or "pmw_id" in cookie)


def test_a_waiting_late_record_keeps_almost_nothing_on_the_collectors_list(core: Personalizer) -> None:
    """Late records wait in memory up to a flush interval (thousands of pages under load), and
    every object they keep on the garbage collector's list is scanned by each collection until
    then: a closure per record kept some twenty, and collections cost 3–14 µs a page."""
    import gc

    scope = {"type": "http", "method": "GET", "scheme": "https", "path": "/plain", "query_string": b"",
             "headers": [(b"host", b"shop.example"), (b"user-agent", b"Mozilla/5.0")], "client": ("203.0.113.9", 1)}
    from personalize_mw.asgi import peek, request_context

    def one() -> list[Any]:
        state = RequestState.of_request(core, scope, request_context, peek)
        later = core.pageview_only(state, PLAIN, "/plain")
        assert later is not None
        return later

    kept = [one() for _ in range(50)]  # warm: caches, interned strings
    gc.collect()
    before = len(gc.get_objects())
    kept += [one() for _ in range(500)]
    per_page = (len(gc.get_objects()) - before) / 500
    assert per_page <= 4  # the page's list, its record, the record's arguments, the copy of the scope
    records = finalize_batch([r for page in kept for r in page])
    assert {r["path"] for r in records} == {"/plain"} and len(records) == 550
