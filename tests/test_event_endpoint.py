"""POST /_personalize/event: same-origin, size, schema, rate limit; on ASGI, WSGI and Django."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import flask
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from personalize_mw import PersonalizeMiddleware, PersonalizeWSGIMiddleware
from personalize_mw.core.event_endpoint import parse_event
from personalize_mw.core.rate_limit import RateLimiter

CONSENT = "analytics=1&personalization=1&advertising=0"
ORIGIN = {"origin": "http://testserver"}
GOALS = {"newsletter": {"path": "/newsletter/thanks", "value": 3, "client": True},
         "signup": {"path": "/thanks", "value": 50},  # server-side only
         "order": {"path": "/order/done", "client": True, "max_value": 500}}


def read(sink: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.read_text("utf-8").splitlines()] if sink.exists() else []


class Site:
    def __init__(self, config: dict[str, Any], sink: Path) -> None:
        app = Starlette(routes=[Route("/", lambda r: HTMLResponse("<p>home</p>"))])
        self.app = PersonalizeMiddleware(app, config=config)
        self.sink = sink

    def client(self, consent: bool = True, address: str = "203.0.113.10") -> TestClient:
        http = TestClient(self.app, client=(address, 5000))
        if consent:
            http.cookies.set("pmw_consent", CONSENT)
        return http

    def post(self, http: TestClient, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> Any:
        content = raw if raw is not None else json.dumps(body).encode()
        return http.post("/_personalize/event", content=content,
                         headers={"content-type": "application/json", **ORIGIN, **(headers or {})})

    def records(self) -> list[dict[str, Any]]:
        self.app.core.queue.close()
        return read(self.sink)


@pytest.fixture
def site(make_core_config: Callable[..., dict[str, Any]], tmp_path: Path) -> Callable[..., Site]:
    return lambda **overrides: Site(make_core_config(goals=GOALS, **overrides), tmp_path / "touchpoints.jsonl")


def test_an_event_from_a_consenting_visitor(site: Callable[..., Site]) -> None:
    s = site()
    http = s.client()
    page = http.get("/")
    visitor = s.app.core.codec.load(page.cookies["pmw_id"]).visitor_id  # type: ignore[union-attr]
    answer = s.post(http, {"name": "video_played", "value": 30, "props": {"id": "intro"}, "path": "/watch"})
    assert answer.status_code == 202 and answer.content == b""
    assert answer.headers["cache-control"] == "no-store"
    pageview, event = s.records()
    assert (event["type"], event["event"], event["value"], event["props"], event["path"]) == \
        ("event", "video_played", 30, {"id": "intro"}, "/watch")
    assert event["visitor"] == visitor and event["session"] == pageview["session"]


def test_the_path_comes_from_the_referer_when_not_given(site: Callable[..., Site]) -> None:
    s = site()
    answer = s.post(s.client(consent=False), {"name": "scrolled"},
                    headers={"referer": "http://testserver/pricing?x=1"})
    assert answer.status_code == 202
    [event] = s.records()
    assert (event["path"], event["visitor"], event["session"]) == ("/pricing", None, None)


def test_a_goal_name_is_a_conversion_and_the_profile_keeps_it(site: Callable[..., Site]) -> None:
    s = site()
    http = s.client()
    answer = s.post(http, {"name": "newsletter"})
    assert answer.status_code == 202
    profile = s.app.core.codec.load(answer.cookies["pmw_id"])
    assert profile is not None and profile.goals == ["newsletter"]
    [conversion] = s.records()
    assert (conversion["type"], conversion["goal"], conversion["value"], conversion["visitor"]) == \
        ("conversion", "newsletter", 3, profile.visitor_id)


def test_a_goal_that_does_not_allow_client_conversions_stays_a_plain_event(site: Callable[..., Site]) -> None:
    s = site()
    http = s.client()
    answer = s.post(http, {"name": "signup", "value": 50})
    assert answer.status_code == 202
    profile = s.app.core.codec.load(answer.cookies["pmw_id"])
    assert profile is not None and profile.goals == [] and profile.session_goals == []  # nothing completed
    [event] = s.records()
    assert (event["type"], event["event"], event["goal"], event["value"]) == ("event", "signup", None, 50)


@pytest.mark.parametrize(("body", "status", "value"), [
    ({"name": "newsletter", "value": 99}, 202, 3),  # no max_value: the goal's own value
    ({"name": "newsletter", "value": 1e308}, 400, None),
    ({"name": "order", "value": 120.5}, 202, 120.5),
    ({"name": "order"}, 202, None),
    ({"name": "order", "value": 501}, 400, None),
    ({"name": "order", "value": -1}, 400, None),
    ({"name": "video_played", "value": 1e308}, 400, None),
    ({"name": "video_played", "value": -999_999}, 202, -999_999),
])
def test_client_values_are_bounded(site: Callable[..., Site], body: dict[str, Any], status: int,
                                   value: Any) -> None:
    s = site()
    answer = s.post(s.client(), body)
    assert answer.status_code == status, answer.text
    records = s.records()
    if status == 400:
        assert records == []
    else:
        [record] = records
        assert record["value"] == value


def test_minting_ids_buys_no_rate_limit_budget(site: Callable[..., Site]) -> None:
    s = site(events={"rate_per_minute": 1000, "anonymous_rate_per_minute": 5})
    answers = [s.post(s.client(), {"name": "video_played"}).status_code for _ in range(12)]  # a fresh id each time
    assert answers.count(202) == 5 and answers.count(429) == 7


@pytest.mark.parametrize("headers", [
    {"origin": "https://evil.example"},
    {"origin": "null"},
    {"sec-fetch-site": "cross-site"},
    {"referer": "https://evil.example/page"},
    {},
])
def test_other_origins_are_refused(site: Callable[..., Site], headers: dict[str, str]) -> None:
    s = site()
    http = s.client()
    answer = http.post("/_personalize/event", content=b'{"name":"x"}',
                       headers={"content-type": "application/json", **headers})
    assert answer.status_code == 403
    assert s.records() == []


def test_a_large_body_is_refused(site: Callable[..., Site]) -> None:
    s = site(events={"max_body_bytes": 256})
    answer = s.post(s.client(), {"name": "x", "props": {"text": "y" * 250}})
    assert answer.status_code == 413
    assert s.post(s.client(), {"name": "x", "props": {"text": "y" * 200}}).status_code == 202


@pytest.mark.parametrize("raw", [
    b"not json", b"[1]", b'"name"', b'{"value": 1}', b'{"name": ""}', b'{"name": "has space"}',
    b'{"name": "x", "value": NaN}', b'{"name": "x", "value": Infinity}', b'{"name": "x", "value": true}',
    b'{"name": "x", "value": "3"}', b'{"name": "x", "props": {"a": {"b": 1}}}', b'{"name": "x", "props": [1]}',
    b'{"name": "x", "extra": 1}', b'{"name": "x", "path": "https://evil.example/"}',
    b"[" * 1000 + b"]" * 1000, "{\"name\": \"x\", \"props\": {\"k\": \"\udcff\"}}".encode("utf-8", "surrogatepass"),
    b'{"name": "x", "props": {"k": "\\ud800"}}', b'{"name": "x", "path": "/\\udcff"}',
])
def test_bodies_outside_the_schema_are_400(site: Callable[..., Site], raw: bytes) -> None:
    s = site(events={"max_body_bytes": 4096})
    answer = s.post(s.client(), raw=raw)
    assert answer.status_code == 400, raw
    assert answer.headers["content-type"].startswith("text/plain")
    assert s.records() == []


def test_a_form_content_type_is_400_and_sendbeacon_text_is_accepted(site: Callable[..., Site]) -> None:
    s = site()
    assert s.post(s.client(), {"name": "x"}, headers={"content-type": "application/x-www-form-urlencoded"}
                  ).status_code == 400
    assert s.post(s.client(), {"name": "x"}, headers={"content-type": "text/plain;charset=UTF-8"}
                  ).status_code == 202


def test_only_post(site: Callable[..., Site]) -> None:
    answer = site().client().get("/_personalize/event", headers=ORIGIN)
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"


def test_each_visitor_has_its_own_limit(site: Callable[..., Site]) -> None:
    s = site(events={"rate_per_minute": 3})
    first, second = s.client(), s.client()
    for http in (first, second):
        http.get("/")  # each gets its own id
    assert [s.post(first, {"name": "x"}).status_code for _ in range(4)] == [202, 202, 202, 429]
    limited = s.post(first, {"name": "x"})
    assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
    assert s.post(second, {"name": "x"}).status_code == 202
    assert len(s.records()) == 2 + 3 + 1  # two pageviews, three + one events


def test_visitors_without_an_id_share_a_limit_per_network(site: Callable[..., Site]) -> None:
    s = site(events={"anonymous_rate_per_minute": 2})
    same_net = [s.client(consent=False, address=f"198.51.100.{n}") for n in (1, 2, 3)]
    assert [s.post(http, {"name": "x"}).status_code for http in same_net] == [202, 202, 429]
    assert s.post(s.client(consent=False, address="198.51.101.1"), {"name": "x"}).status_code == 202


def test_rate_limiter_window() -> None:
    now = [0.0]
    limiter = RateLimiter(2, window_s=60, timer=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    now[0] = 59.9
    assert limiter.allow("a") is False  # hits inside the window do not extend it, nor reset it
    now[0] = 60.0
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = RateLimiter(1, max_keys=10)
    for n in range(1000):
        limiter.allow(str(n))
    assert len(limiter._counts) <= 10


def test_parse_event_keeps_the_types() -> None:
    assert parse_event(b'{"name": "a.b:c-d_e", "value": 2.5, "props": {"n": 1, "t": "x", "b": false, "z": null}}') \
        == ("a.b:c-d_e", 2.5, {"n": 1, "t": "x", "b": False, "z": None}, None)


# ---------------------------------------------------------------- WSGI and Django


def test_wsgi(make_core_config: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    app = flask.Flask(__name__)
    middleware = PersonalizeWSGIMiddleware(app.wsgi_app, config=make_core_config())
    app.wsgi_app = middleware  # type: ignore[method-assign]
    client = app.test_client()
    client.set_cookie("pmw_consent", CONSENT)
    answer = client.post("/_personalize/event", data=b'{"name": "clicked", "value": 1}',
                         headers={"content-type": "application/json", "origin": "http://localhost"})
    assert answer.status_code == 202 and answer.status == "202 Accepted"
    assert client.get_cookie("pmw_id") is not None
    assert client.post("/_personalize/event", data=b'{"name": "x"}',
                       headers={"content-type": "application/json"}).status_code == 403
    middleware.core.queue.close()
    [event] = read(tmp_path / "touchpoints.jsonl")
    assert (event["event"], event["value"]) == ("clicked", 1) and event["visitor"] is not None
