"""identify() and track() from view code: Starlette and Flask (and raw WSGI), through the real middleware."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable

import flask
import pytest
from conftest import CORE_SECRET
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.wrappers import Request as WerkzeugRequest

import personalize_mw
import personalize_mw.tracking
from personalize_mw import PersonalizeMiddleware, PersonalizeWSGIMiddleware

CONSENT = "analytics=1&personalization=1&advertising=0"
ANALYTICS_ONLY = "analytics=1&personalization=0&advertising=0"
PAGE = "<html><body>hello</body></html>"
GOALS = {"demo_requested": {"path": "/demo/thanks", "value": 50}}


def expected_hash(user_id: str, secret: str = CORE_SECRET) -> str:
    """The documented construction, computed here independently of the implementation."""
    key = hmac.new(secret.encode(), b"personalize_mw.identity.v1", hashlib.sha256).digest()
    return hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()


def read(sink: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.read_text("utf-8").splitlines()] if sink.exists() else []


class Site:
    """A Starlette app whose views call identify/track, wrapped by the middleware; records on close."""

    def __init__(self, config: dict[str, Any], sink: Path) -> None:
        self.calls: list[bool] = []
        routes = [
            Route("/login", self.login, methods=["POST"]),
            Route("/page-login", self.page_login),
            Route("/demo", self.demo, methods=["POST"]),
            Route("/video", self.video),
            Route("/later", self.later),
            Route("/api", self.api),
            Route("/missing", self.missing),
        ]
        self.app = PersonalizeMiddleware(Starlette(routes=routes), config=config)
        self.sink = sink

    async def login(self, request: Request) -> Response:
        self.calls.append(personalize_mw.identify(request, "alice@example.com"))
        return RedirectResponse("/account", status_code=303)

    async def page_login(self, request: Request) -> Response:
        self.calls.append(personalize_mw.identify(request, 42))
        return HTMLResponse(PAGE)

    async def demo(self, request: Request) -> Response:
        self.calls.append(personalize_mw.track(request, "demo_requested", value=75, props={"plan": "pro"}))
        return RedirectResponse("/", status_code=303)

    async def video(self, request: Request) -> Response:
        self.calls.append(personalize_mw.track(request, "video_played", value=12.5))
        return HTMLResponse(PAGE)

    async def later(self, request: Request) -> Response:
        def after() -> None:
            self.calls.append(personalize_mw.track(request, "export_done"))
        return JSONResponse({"ok": True}, background=BackgroundTask(after))

    async def api(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def missing(self, request: Request) -> Response:
        self.calls.append(personalize_mw.track(request.scope | {"personalize_mw.state": None}, "x"))
        return JSONResponse({})

    def client(self, cookie: str | None = CONSENT) -> TestClient:
        http = TestClient(self.app, follow_redirects=False)
        if cookie:
            http.cookies.set("pmw_consent", cookie)
        return http

    def records(self) -> list[dict[str, Any]]:
        self.app.core.queue.close()
        return read(self.sink)


@pytest.fixture
def site(make_core_config: Callable[..., dict[str, Any]], tmp_path: Path) -> Callable[..., Site]:
    return lambda **overrides: Site(make_core_config(goals=GOALS, **overrides), tmp_path / "touchpoints.jsonl")


def visitor_in(response: Any, site: Site) -> str:
    profile = site.app.core.codec.load(response.cookies["pmw_id"])
    assert profile is not None
    return profile.visitor_id


# ---------------------------------------------------------------- identify


def test_identify_links_the_cookie_visitor_to_the_hashed_user(site: Callable[..., Site]) -> None:
    s = site()
    with s.client() as http:
        first = http.get("/api")  # not a page: no id yet
        assert "pmw_id" not in first.cookies
        page = http.get("/page-login")
        visitor = visitor_in(page, s)
        http.cookies.set("pmw_id", page.cookies["pmw_id"])
        login = http.post("/login")
    assert s.calls == [True, True]
    records = s.records()
    identifies = [r for r in records if r["type"] == "identify"]
    assert [r["user"] for r in identifies] == [expected_hash("42"), expected_hash("alice@example.com")]
    assert {r["visitor"] for r in identifies} == {visitor}
    pageview = next(r for r in records if r["type"] == "pageview")
    assert identifies[0]["session"] == pageview["session"] is not None
    assert identifies[1]["path"] == "/login" and login.status_code == 303
    assert "alice" not in json.dumps(records)


def test_identify_on_a_first_request_that_is_a_redirect_sets_the_id_it_records(site: Callable[..., Site]) -> None:
    s = site()
    with s.client() as http:
        response = http.post("/login")  # a plain 303: no page, no goal, yet the id must be set
        visitor = visitor_in(response, s)
        assert "private" in response.headers["cache-control"]
    [record] = s.records()
    assert (record["type"], record["visitor"], record["user"]) == ("identify", visitor, expected_hash("alice@example.com"))


def test_identify_stores_the_id_as_given_when_hashing_is_off(site: Callable[..., Site]) -> None:
    s = site(identity={"hash": False})
    with s.client() as http:
        http.post("/login")
    assert [r["user"] for r in s.records()] == ["alice@example.com"]


def test_identify_with_an_explicit_key(site: Callable[..., Site]) -> None:
    key = "identity-key-0123456789abcdef"
    s = site(identity={"key": key}, secret_keys=["rotated-secret-0123456789", CORE_SECRET])
    with s.client() as http:
        http.post("/login")
    assert [r["user"] for r in s.records()] == [expected_hash("alice@example.com", key)]


def test_the_hash_survives_adding_a_secret_key(site: Callable[..., Site]) -> None:
    s = site(secret_keys=[CORE_SECRET, "newer-secret-0123456789abcdef"])
    with s.client() as http:
        http.post("/login")
    assert [r["user"] for r in s.records()] == [expected_hash("alice@example.com")]


@pytest.mark.parametrize("cookie", [None, ANALYTICS_ONLY, "analytics=0&personalization=1&advertising=0"])
def test_identify_needs_analytics_and_a_visitor_id(site: Callable[..., Site], cookie: str | None) -> None:
    s = site()
    with s.client(cookie) as http:
        http.post("/login")
        http.get("/page-login")
    assert s.calls == [False, False]
    assert [r["type"] for r in s.records()] == ["pageview"]


@pytest.mark.parametrize("bad", [None, "", "x" * 257, 3.5, b"bytes", "user\udcff"])
def test_identify_refuses_a_bad_user_id(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        personalize_mw.identify({}, bad)


# ---------------------------------------------------------------- track


def test_track_a_goal_is_a_conversion_and_the_profile_remembers_it(site: Callable[..., Site]) -> None:
    s = site()
    with s.client() as http:
        response = http.post("/demo")
        visitor = visitor_in(response, s)
        profile = s.app.core.codec.load(response.cookies["pmw_id"])
    assert profile is not None and "demo_requested" in profile.goals
    [record] = s.records()
    assert (record["type"], record["goal"], record["value"], record["props"], record["visitor"]) == \
        ("conversion", "demo_requested", 75, {"plan": "pro"}, visitor)
    assert record["event"] is None


def test_track_an_event_on_a_page_with_and_without_consent(site: Callable[..., Site]) -> None:
    s = site()
    s.client().get("/video")  # no `with`: its lifespan shutdown would close the queue
    s.client(None).get("/video")
    assert s.calls == [True, True]
    events = [r for r in s.records() if r["type"] == "event"]
    assert [(r["event"], r["value"], r["goal"]) for r in events] == [("video_played", 12.5, None)] * 2
    assert events[0]["visitor"] is not None and events[1]["visitor"] is None and events[1]["session"] is None


def test_track_after_the_response_records_at_once(site: Callable[..., Site]) -> None:
    s = site()
    with s.client() as http:
        visitor = visitor_in(http.get("/page-login"), s)
        http.get("/later")
    assert s.calls[-1] is True
    later = [r for r in s.records() if r["type"] == "event"]
    assert [(r["event"], r["visitor"], r["path"]) for r in later] == [("export_done", visitor, "/later")]


@pytest.mark.parametrize(("name", "value", "props"), [
    ("", None, None), ("has space", None, None), ("x" * 65, None, None), (7, None, None),
    ("ok", math.nan, None), ("ok", math.inf, None), ("ok", True, None), ("ok", "3", None),
    ("ok", None, {str(i): i for i in range(21)}), ("ok", None, {"nested": {"a": 1}}),
    ("ok", None, {"long": "x" * 257}), ("ok", None, {"": 1}), ("ok", None, ["a"]),
    ("ok", None, {"k": "\ud800"}), ("ok", None, {"\udcff": 1}),  # lone surrogates: no UTF-8 for the sink
])
def test_track_refuses_bad_arguments(name: Any, value: Any, props: Any) -> None:
    with pytest.raises(ValueError):
        personalize_mw.track({}, name, value=value, props=props)


def test_without_the_middleware_nothing_is_recorded_and_it_says_so_once(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(personalize_mw.tracking, "_warned", False)
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    with caplog.at_level(logging.WARNING, "personalize_mw"):
        assert personalize_mw.track(request, "x") is False
        assert personalize_mw.identify(request, "u") is False
    assert sum("did not see" in r.getMessage() for r in caplog.records) == 1


def test_disabled_middleware_records_nothing_quietly(site: Callable[..., Site],
                                                     caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(personalize_mw.tracking, "_warned", False)
    s = site(enabled=False)
    with caplog.at_level(logging.WARNING, "personalize_mw"), s.client() as http:
        http.post("/demo")
        http.post("/login")
    assert s.calls == [False, False]
    assert not caplog.records
    assert s.records() == []


# ---------------------------------------------------------------- Flask and raw WSGI


def flask_site(config: dict[str, Any]) -> tuple[flask.Flask, PersonalizeWSGIMiddleware]:
    app = flask.Flask(__name__)

    @app.post("/login")
    def login() -> Any:
        ok = personalize_mw.identify(flask.request, "bob")
        return flask.redirect("/account", code=303) if ok else ("no", 400)

    @app.post("/demo")
    def demo() -> Any:
        personalize_mw.track(flask.request._get_current_object(), "demo_requested")  # type: ignore[attr-defined]
        return flask.redirect("/", code=303)

    @app.get("/page")
    def page() -> Any:
        personalize_mw.track(WerkzeugRequest(flask.request.environ), "faq_opened", props={"q": 3})
        return PAGE

    middleware = PersonalizeWSGIMiddleware(app.wsgi_app, config=config)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    return app, middleware


def test_flask_identify_and_track(make_core_config: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    app, middleware = flask_site(make_core_config(goals=GOALS))
    client = app.test_client()
    client.set_cookie("pmw_consent", CONSENT)
    login = client.post("/login")
    assert login.status_code == 303
    cookie = client.get_cookie("pmw_id")
    assert cookie is not None
    visitor = middleware.core.codec.load(cookie.value).visitor_id  # type: ignore[union-attr]
    client.post("/demo")
    assert client.get("/page").data == PAGE.encode()
    middleware.core.queue.close()
    records = read(tmp_path / "touchpoints.jsonl")
    assert [(r["type"], r["visitor"]) for r in records] == [
        ("identify", visitor), ("conversion", visitor), ("pageview", visitor), ("event", visitor)]
    assert records[0]["user"] == expected_hash("bob")
    assert (records[1]["goal"], records[1]["value"]) == ("demo_requested", 50)  # the goal's value
    assert (records[3]["event"], records[3]["props"]) == ("faq_opened", {"q": 3})


def test_raw_wsgi_environ(make_core_config: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    calls = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append(personalize_mw.track(environ, "ping", value=1))
        start_response("204 No Content", [])
        return []

    middleware = PersonalizeWSGIMiddleware(app, config=make_core_config())
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/ping", "SERVER_NAME": "x", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "wsgi.input": None}
    list(middleware(environ, lambda status, headers, exc_info=None: None))
    middleware.core.queue.close()
    assert calls == [True]
    assert [(r["type"], r["event"], r["value"]) for r in read(tmp_path / "touchpoints.jsonl")] == [("event", "ping", 1)]


def test_a_goal_tracked_after_the_response_reaches_the_learning_strategies(tmp_path: Path) -> None:
    # One door for records: a late track() (a background task) is shown to strategies as a page's are.
    import strategy_plugins
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from personalize_mw import PersonalizeMiddleware, track

    strategy_plugins.Watching.seen.clear()

    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse("<p>ok</p>", background=BackgroundTask(lambda: track(request, "signup")))

    config = {"secret_keys": ["late-track-secret-0123456789"], "sink": f"jsonl:{tmp_path / 't.jsonl'}",
              "goals": {"signup": {"path": "/never", "value": 9}},
              "slots": {"hero": {"strategy": "python:strategy_plugins:Watching"}}}
    app = PersonalizeMiddleware(Starlette(routes=[Route("/", page)]), config=config)
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
    kinds = [(r["type"], r.get("goal")) for r in strategy_plugins.Watching.seen]
    assert ("conversion", "signup") in kinds  # recorded after the response, and seen all the same
