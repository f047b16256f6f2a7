"""The response contract, written once and run against every adapter.

Each case describes what the app sends in neutral terms (:class:`AppSends`),
runs it through the bare app and through the app with personalize_mw on the
same framework, and states what personalize_mw must (and must not) change.
The adapters: plain ASGI, Starlette, Flask under werkzeug's LintMiddleware
(inside and outside ours, its warnings errors here), and Django sync and async.
"""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import flask
import pytest
from conftest import ADAPTER_CONSENT, configure_django, core_config_dict
from django.http import HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import re_path
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from werkzeug.middleware.lint import HTTPWarning, LintMiddleware, WSGIWarning

import personalize_mw
from personalize_mw import PersonalizeMiddleware, PersonalizeWSGIMiddleware
from personalize_mw.core.context import RequestContext
from personalize_mw.core import page_memo
from personalize_mw.core.cookies import Cookies
from personalize_mw.core.personalizer import Outcome, SeenVisitor
from personalize_mw.core.request_state import RequestState
from personalize_mw.core.response import ResponseFlow
from personalize_mw.core.visitor import VisitorCodec
from personalize_mw.touchpoints import queue as delivery

pytestmark = [pytest.mark.filterwarnings("error::werkzeug.middleware.lint.WSGIWarning"),
              pytest.mark.filterwarnings("error::werkzeug.middleware.lint.HTTPWarning")]

DEFAULT = b"<p>Default hero</p>"
PAGE = b"<html><body><h1>Shop</h1><!-- personalize:hero -->" + DEFAULT + b"<!-- /personalize:hero --></body></html>"
WELCOME = "<p>Welcome ✓</p>"
ORIGIN = "http://testserver"


class AppError(Exception):
    """The app's own exception: it must reach the server untouched."""


@dataclass
class AppSends:
    """What the app answers, in neutral terms each adapter translates to its framework."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("content-type", "text/html; charset=utf-8")])
    chunks: list[bytes] = field(default_factory=lambda: [PAGE])
    raise_before: bool = False  # raises instead of answering
    raise_after_start: bool = False  # raises after the head and the first chunk (ASGI, WSGI)
    view: Callable[[Any], None] | None = None  # view code, given the framework's own request object


@dataclass
class Got:
    status: int
    headers: list[tuple[str, str]]  # names lower case, in order
    body: bytes

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]

    def one(self, name: str) -> str | None:
        values = self.all(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times: {values}"
        return values[0] if values else None

    def ours(self) -> list[str]:
        """Our Set-Cookie values as sent: the same bytes under every adapter (no quotes from Django's)."""
        return [v for v in self.all("set-cookie") if v.startswith(("pmw_", "__Host-pmw_"))]


@dataclass
class Request_:
    method: str = "GET"
    path: str = "/"
    cookie: str | None = ADAPTER_CONSENT
    body: bytes = b""
    content_type: str | None = None
    origin: str | None = None


# ---------------------------------------------------------------- the adapters

class Adapter:
    name = ""
    raises_after_start = True  # the framework lets an app fail after its head went out

    def serve(self, sends: AppSends, request: Request_, config: dict[str, Any] | None) -> Got:
        raise NotImplementedError


def _lower(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(n.lower(), v) for n, v in headers]


class _ServerCycle:
    """One request as uvicorn's RequestResponseCycle holds it: the scope, and the bound
    receive and send the app gets, so an app (or middleware) that keeps the send where
    the scope reaches it makes a reference cycle, as under the real server."""

    def __init__(self, scope: dict[str, Any], body: bytes) -> None:
        self.scope, self.body, self.asked = scope, body, False
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.asked:
            await asyncio.sleep(3600)
        self.asked = True
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


class RawASGI(Adapter):
    name = "asgi"

    def app(self, sends: AppSends) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if sends.raise_before:
                raise AppError("before")
            if sends.view is not None:
                sends.view(scope)
            await send({"type": "http.response.start", "status": sends.status,
                        "headers": [(n.encode(), v.encode("latin-1")) for n, v in sends.headers]})
            chunks = sends.chunks or [b""]
            last = len(chunks) - 1
            for i, chunk in enumerate(chunks):
                await send({"type": "http.response.body", "body": chunk, "more_body": i < last})
                if sends.raise_after_start:
                    raise AppError("after")
        return app

    def wrap(self, app: Any, config: dict[str, Any] | None) -> Any:
        return app if config is None else PersonalizeMiddleware(app, config=config)

    def serve(self, sends: AppSends, request: Request_, config: dict[str, Any] | None) -> Got:
        app = self.wrap(self.app(sends), config)
        headers = [(b"host", b"testserver"), (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64)")]
        if request.cookie:
            headers.append((b"cookie", request.cookie.encode()))
        if request.content_type:
            headers.append((b"content-type", request.content_type.encode()))
        if request.origin:
            headers.append((b"origin", request.origin.encode()))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
                 "scheme": "http", "path": request.path, "raw_path": request.path.encode(), "root_path": "",
                 "query_string": b"", "headers": headers, "client": ("127.0.0.1", 50000),
                 "server": ("testserver", 80)}
        cycle = _ServerCycle(scope, request.body)
        asyncio.run(asyncio.wait_for(app(scope, cycle.receive, cycle.send), timeout=10))
        sent = cycle.sent
        starts = [m for m in sent if m["type"] == "http.response.start"]
        assert len(starts) == 1
        bodies = [m for m in sent if m["type"] == "http.response.body"]
        assert not bodies[-1].get("more_body", False), "the body never ended"
        return Got(starts[0]["status"], [(n.decode().lower(), v.decode("latin-1")) for n, v in starts[0]["headers"]],
                   b"".join(m.get("body", b"") for m in bodies))


class StarletteAdapter(RawASGI):
    name = "starlette"
    raises_after_start = False  # a Response sends all it has; an app error comes before it

    def app(self, sends: AppSends) -> Any:
        async def endpoint(request: Request) -> Response:
            if sends.raise_before:
                raise AppError("before")
            if sends.view is not None:
                sends.view(request)
            headers = dict(sends.headers)
            if len(sends.chunks) > 1:
                return StreamingResponse(iter(sends.chunks), status_code=sends.status, headers=headers)
            return Response(sends.chunks[0] if sends.chunks else b"", status_code=sends.status, headers=headers)
        return Starlette(routes=[Route("/{rest:path}", endpoint, methods=["GET", "HEAD", "POST"])])


class _WSGIServer:
    """What a WSGI server does around the app: a handler per request that holds the environ
    and hands the app a start_response bound to itself (werkzeug's and waitress's do), so
    an app (or middleware) that keeps that start_response where the environ reaches it makes
    a reference cycle, as under the real server."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.app(environ, _WSGIHandler(environ, start_response).start_response)


class _WSGIHandler:
    def __init__(self, environ: dict[str, Any], start_response: Any) -> None:
        self.environ, self.outer = environ, start_response

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return self.outer(status, headers, exc_info) if exc_info is not None else self.outer(status, headers)


class FlaskAdapter(Adapter):
    name = "flask"

    def serve(self, sends: AppSends, request: Request_, config: dict[str, Any] | None) -> Got:
        app = flask.Flask(__name__)
        app.config["PROPAGATE_EXCEPTIONS"] = True  # the app's exception reaches the server, as it would

        @app.before_request  # every path, whatever it holds: no routing in the way
        def view() -> Any:
            if sends.raise_before:
                raise AppError("before")
            if sends.view is not None:
                sends.view(flask.request)

            def chunks() -> Iterator[bytes]:
                for chunk in sends.chunks:
                    yield chunk
                    if sends.raise_after_start:
                        raise AppError("after")
            body: Any = sends.chunks[0] if len(sends.chunks) == 1 and not sends.raise_after_start else chunks()
            response = flask.Response(body if sends.chunks else None, status=sends.status)
            response.automatically_set_content_length = False  # the headers are exactly the app's
            response.headers.clear()
            for name, value in sends.headers:
                response.headers.add(name, value)
            return response

        inner = LintMiddleware(app.wsgi_app)
        app.wsgi_app = _WSGIServer(LintMiddleware(  # type: ignore[method-assign]
            inner if config is None else PersonalizeWSGIMiddleware(inner, config=config)))
        headers = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}
        if request.cookie:
            headers["Cookie"] = request.cookie
        if request.origin:
            headers["Origin"] = request.origin
        client = app.test_client(use_cookies=False)
        with warnings.catch_warnings():
            if request.method == "HEAD":  # Werkzeug empties a HEAD body but keeps the length: Lint objects
                warnings.filterwarnings("ignore", "Content-Length and the number of bytes", WSGIWarning)
            if sends.status == 204:  # Werkzeug drops a 204's Content-Length; its Lint wants "0" there
                warnings.filterwarnings("ignore", "204 responses must have an empty", HTTPWarning)
            # Our form endpoints send the visitor back to a path on this site; RFC 9110 10.2.2
            # allows a relative Location, Lint still holds RFC 2616's absolute-only rule.
            warnings.filterwarnings("ignore", "Absolute URLs required for location header", HTTPWarning)
            response = client.open(request.path, base_url=ORIGIN, method=request.method, headers=headers,
                                   data=request.body, content_type=request.content_type, buffered=True)
        return Got(response.status_code, _lower(response.headers.to_wsgi_list()), response.data)


_DJANGO_SENDS: dict[str, AppSends] = {}


def django_view(request: Any, rest: str = "") -> HttpResponse:
    sends = _DJANGO_SENDS["now"]
    if sends.raise_before:
        raise AppError("before")
    if sends.view is not None:
        sends.view(request)
    response = HttpResponse(b"".join(sends.chunks), status=sends.status)
    del response["Content-Type"]
    for name, value in sends.headers:
        if name.lower() == "set-cookie":
            key, _, rest_ = value.partition("=")
            response.set_cookie(key, rest_.split(";", 1)[0])
        else:
            response[name] = value
    return response


urlpatterns = [re_path(r"(?s)^(?P<rest>.*)$", django_view)]  # every path, newlines included

configure_django()


class DjangoAdapter(Adapter):
    name = "django"
    raises_after_start = False  # a view returns a whole response
    client_class: Any = Client

    def serve(self, sends: AppSends, request: Request_, config: dict[str, Any] | None) -> Got:
        _DJANGO_SENDS["now"] = sends
        middleware = [] if config is None else ["personalize_mw.django.PersonalizeMiddleware"]
        with override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=middleware, PERSONALIZE_CONFIG=config):
            headers = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64)"}
            if request.origin:
                headers["origin"] = request.origin
            client = self.client_class()
            if request.cookie:
                client.cookies.load(request.cookie)
            kwargs: dict[str, Any] = {"headers": headers}
            if request.method == "POST":
                kwargs.update(data=request.body, content_type=request.content_type or "application/octet-stream")
            response = self.call(getattr(client, request.method.lower())(request.path, **kwargs))
        headers_ = _lower(list(response.items()))
        headers_ += [("set-cookie", morsel.OutputString()) for morsel in response.cookies.values()]
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return Got(response.status_code, headers_, body)

    def call(self, result: Any) -> Any:
        return result


class DjangoAsyncAdapter(DjangoAdapter):
    name = "django-async"
    client_class = AsyncClient

    def call(self, result: Any) -> Any:
        return asyncio.run(result)


ADAPTERS = [RawASGI(), StarletteAdapter(), FlaskAdapter(), DjangoAdapter(), DjangoAsyncAdapter()]


@pytest.fixture(params=ADAPTERS, ids=lambda a: a.name)
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return request.param


@dataclass
class Site:
    """One test's config and sink; ``records()`` closes the pipelines it opened and reads the file."""

    sink: Path
    before: set[Any]

    def config(self, **overrides: Any) -> dict[str, Any]:
        config = core_config_dict(
            self.sink,
            slots={"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "welcome", "id": "hello",
                                       "template": WELCOME}]}},
            goals={"signup": {"path": "/signup", "value": 10}},
        )
        config.update(overrides)
        return config

    def records(self) -> list[dict[str, Any]]:
        with delivery._LIVE_LOCK:
            opened = [p for p in delivery._LIVE if p not in self.before]
        for pipeline in opened:
            pipeline.close()
        if not self.sink.exists():
            return []
        return [json.loads(line) for line in self.sink.read_text("utf-8").splitlines()]

    def types(self) -> list[str]:
        return sorted(r["type"] for r in self.records())


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with delivery._LIVE_LOCK:
        before = set(delivery._LIVE)
    made = Site(tmp_path / "touchpoints.jsonl", before)
    yield made
    made.records()


def both(adapter: Adapter, site: Site, sends: AppSends, request: Request_ | None = None,
         **config: Any) -> tuple[Got, Got]:
    request = request or Request_()
    return adapter.serve(sends, request, None), adapter.serve(sends, request, site.config(**config))


def page_headers(*extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [("content-type", "text/html; charset=utf-8"), *extra]


# ---------------------------------------------------------------- pages with slots


def test_a_page_with_slots_is_filled_made_private_and_recorded(adapter: Adapter, site: Site) -> None:
    sends = AppSends(headers=page_headers(("etag", '"v1"'), ("last-modified", "Wed, 01 Jan 2025 00:00:00 GMT"),
                                          ("cache-control", "public, max-age=60"), ("vary", "Accept-Encoding"),
                                          ("x-accel-expires", "60"), ("surrogate-control", "max-age=60"),
                                          ("set-cookie", "app_session=s1; Path=/")))
    bare, got = both(adapter, site, sends)
    assert got.status == bare.status == 200
    assert got.body == PAGE.replace(DEFAULT, WELCOME.encode())
    length = got.one("content-length")
    assert length is None or int(length) == len(got.body)  # bytes, not characters
    assert got.one("etag") is None and got.one("last-modified") is None
    assert got.one("cache-control") == "private, max-age=60"
    assert got.one("vary") == "Accept-Encoding, Cookie"
    assert got.one("x-accel-expires") is None and got.one("surrogate-control") is None  # proxies' own rules
    assert any(v.startswith("app_session=s1") for v in got.all("set-cookie"))  # the app's cookie kept
    assert len(got.ours()) == 1 and got.ours()[0].startswith("pmw_id=")
    assert site.types() == ["exposure", "pageview"]


def _ours_holding(target: object) -> list[str]:
    """Objects of personalize_mw that still reach ``target``, directly or through one container.

    But a page the page memo keeps, for the next request to find (core/page_memo.py; bounded,
    as long-lived as the app, not a request's): only a page it holds, nothing else of the module.
    """
    kept = {id(p) for memo in gc.get_objects() if type(memo) is page_memo.PageMemo  # type(): no lazy object wakes
            for p in memo._pages.values()}
    found = []
    for holder in gc.get_referrers(target):
        holders = gc.get_referrers(holder) if isinstance(holder, (list, dict, tuple)) else [holder]
        found += [type(h).__qualname__ for h in holders
                  if type(h).__module__.startswith("personalize_mw") and id(h) not in kept]
    return found


# What a request makes (the app's middleware, config and Jinja environment may hold cycles
# of their own: they live as long as the app, and this test's app is gone by now).
_REQUEST_TYPES = (RequestState, ResponseFlow, RequestContext, Outcome, SeenVisitor, Cookies,
                  personalize_mw.asgi._Exchange, personalize_mw.wsgi._Response)


def _in_cycles(garbage: list[Any], types: tuple[type, ...]) -> list[str]:
    """Objects of ``types`` that lie on a reference cycle among ``garbage`` (not merely hang off
    a framework's own cycle, as a Django request's state may)."""
    by_id = {id(o): o for o in garbage}
    found = []
    for start in garbage:
        if not issubclass(type(start), types):  # type(): a dead weak proxy fails isinstance()
            continue
        stack, seen = [start], set()
        while stack:
            refs = [r for r in gc.get_referents(stack.pop()) if id(r) in by_id]
            if any(r is start for r in refs):
                found.append(type(start).__name__)
                break
            fresh = [r for r in refs if id(r) not in seen]
            seen.update(id(r) for r in fresh)
            stack.extend(fresh)
    return found


@pytest.mark.parametrize("response", ["page", "JSON"])
def test_nothing_of_ours_keeps_a_request_alive_once_it_is_over(adapter: Adapter, site: Site, response: str) -> None:
    """Cycles through the request state would keep every page and its rewrite until the next GC
    pass, and the collections they set off cost a real server a third of its pages (perf.md)."""
    page = PAGE + b"<!-- this test's own copy -->"
    gc.collect()
    gc.disable()
    try:
        if response == "page":
            got = adapter.serve(AppSends(chunks=[page]), Request_(), site.config())
            assert got.body == page.replace(DEFAULT, WELCOME.encode())  # filled: it went through us
            assert _ours_holding(page) == []
            assert _ours_holding(got.body) == []
        else:  # passes through untouched: no flow, no context (the scope or environ is all it read)
            sends = AppSends(headers=[("content-type", "application/json")], chunks=[b'{"plans": []}'])
            assert adapter.serve(sends, Request_(), site.config()).body == b'{"plans": []}'
        gc.set_debug(gc.DEBUG_SAVEALL)  # what only the collector frees: no cycle runs through the request's objects
        gc.collect()
        assert _in_cycles(gc.garbage, _REQUEST_TYPES) == []
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def test_a_page_with_slots_that_shows_its_default_drops_validators_all_the_same(adapter: Adapter,
                                                                                 site: Site) -> None:
    sends = AppSends(headers=page_headers(("etag", '"v1"')))
    never = {"hero": {"rules": [{"if": {"query.never": "1"}, "variant": "x", "template": "<p>x</p>"}]}}
    bare, got = both(adapter, site, sends, slots=never)
    assert got.body == bare.body == PAGE
    assert bare.one("etag") == '"v1"' and got.one("etag") is None  # one visitor's copy is not another's
    assert got.one("cache-control") == "private" and got.one("vary") == "Cookie"
    assert site.types() == ["pageview"]


def test_head_of_a_page_with_slots_carries_the_cache_headers_of_get_and_records_nothing(adapter: Adapter,
                                                                                      site: Site) -> None:
    sends = AppSends(headers=page_headers(("etag", '"v1"'), ("content-length", str(len(PAGE)))))
    bare, got = both(adapter, site, sends, Request_(method="HEAD"))
    assert got.status == bare.status == 200
    assert got.body == bare.body  # whatever the framework does with a HEAD body, we do not change it
    assert got.one("content-length") == bare.one("content-length")  # never recomputed from a HEAD body
    assert got.one("etag") is None
    assert got.one("cache-control") == "private" and got.one("vary") == "Cookie"
    assert got.ours() == []
    assert site.records() == []


@pytest.mark.parametrize("pieces", [1, 3], ids=["one piece", "three chunks"])
def test_a_page_over_the_buffer_limit_passes_unchanged_however_it_is_chunked(adapter: Adapter, site: Site,
                                                                            pieces: int) -> None:
    big = PAGE.replace(b"<h1>Shop</h1>", b"<h1>" + b"x" * 1500 + b"</h1>")
    third = len(big) // pieces
    chunks = [big[i * third:(i + 1) * third if i < pieces - 1 else len(big)] for i in range(pieces)]
    bare, got = both(adapter, site, AppSends(chunks=chunks), buffer_limit=1024)
    assert got.body == bare.body == big
    assert got.one("content-length") == bare.one("content-length")
    assert got.ours() and got.one("cache-control") == "private"  # the visit happened: id cookie, private
    assert site.types() == ["pageview"]  # nothing was shown, so no exposure


def test_a_small_page_in_many_chunks_is_filled(adapter: Adapter, site: Site) -> None:
    chunks = [PAGE[:30], PAGE[30:60], PAGE[60:]]
    bare, got = both(adapter, site, AppSends(chunks=chunks))
    assert bare.body == PAGE
    assert got.body == PAGE.replace(DEFAULT, WELCOME.encode())
    assert site.types() == ["exposure", "pageview"]


def test_markers_in_a_script_neither_fill_nor_switch_off_the_page(adapter: Adapter, site: Site) -> None:
    # Visitor input in a JS string, escaped for "</" only: a stray closer and a
    # marker pair of its own. The page's real block is still filled; the script is not.
    script = (b"<script>var q = '<!-- /personalize:hero -->';"
              b"var t = '<!-- personalize:hero -->x<!-- /personalize:hero -->';</script>")
    page = PAGE.replace(b"</body>", script + b"</body>")
    bare, got = both(adapter, site, AppSends(chunks=[page]))
    assert got.body == page.replace(DEFAULT, WELCOME.encode())
    assert site.types() == ["exposure", "pageview"]


def test_a_page_in_another_ascii_compatible_charset_gets_character_references(adapter: Adapter,
                                                                              site: Site) -> None:
    page = PAGE.decode().replace("Shop", "Küche").encode("iso-8859-1")
    sends = AppSends(headers=[("content-type", "text/html; charset=iso-8859-1")], chunks=[page])
    bare, got = both(adapter, site, sends)
    assert got.body == page.replace(DEFAULT, "<p>Welcome &#10003;</p>".encode())


def test_withdrawn_consent_expires_the_id_cookie(adapter: Adapter, site: Site) -> None:
    bare, got = both(adapter, site, AppSends(), Request_(cookie="pmw_id=left-from-before"))
    assert [c.split(";")[0] for c in got.ours()] == ["pmw_id="]
    assert "Max-Age=0" in got.ours()[0]
    assert got.body == PAGE.replace(DEFAULT, WELCOME.encode())  # a request-only rule still applies
    assert [r["visitor"] for r in site.records()] == [None, None]  # no identifier without consent


# ---------------------------------------------------------------- what is not ours passes byte for byte

NOT_OURS = {
    "json": AppSends(headers=[("content-type", "application/json")], chunks=[b'{"a": 1}']),
    "204": AppSends(status=204, headers=[], chunks=[]),
    "304": AppSends(status=304, headers=[("etag", '"v1"')], chunks=[]),
    "206": AppSends(status=206, headers=page_headers(("content-range", f"bytes 0-9/{len(PAGE)}")),
                    chunks=[PAGE[:10]]),
    "404 page": AppSends(status=404, chunks=[PAGE]),
    "gzip": AppSends(headers=page_headers(("content-encoding", "gzip")), chunks=[b"\x1f\x8b not really"]),
    "br": AppSends(headers=page_headers(("content-encoding", "br")), chunks=[b"not really"]),
    "utf-16": AppSends(headers=[("content-type", "text/html; charset=utf-16")],
                       chunks=[PAGE.decode().encode("utf-16")]),
    "event stream": AppSends(headers=[("content-type", "text/event-stream")], chunks=[b"data: 1\n\n", b"data: 2\n\n"]),
    "no content type": AppSends(headers=[], chunks=[PAGE]),
}


@pytest.mark.parametrize("kind", list(NOT_OURS))
def test_responses_that_are_not_pages_pass_byte_for_byte(adapter: Adapter, site: Site, kind: str) -> None:
    bare, got = both(adapter, site, NOT_OURS[kind])
    assert got == bare
    assert site.records() == []


def test_a_page_without_markers_for_a_visitor_without_consent_passes_byte_for_byte(adapter: Adapter,
                                                                                   site: Site) -> None:
    plain = AppSends(headers=page_headers(("etag", '"v1"')), chunks=[b"<html><p>no slots</p></html>"])
    bare, got = both(adapter, site, plain, Request_(cookie=None))
    assert got == bare
    assert site.types() == ["pageview"]


def test_a_goal_reached_by_a_redirect_records_a_conversion_and_keeps_the_redirect(adapter: Adapter,
                                                                                  site: Site) -> None:
    sends = AppSends(status=303, headers=[("location", f"{ORIGIN}/thanks")], chunks=[])
    bare, got = both(adapter, site, sends, Request_(path="/signup"))
    assert got.status == bare.status == 303 and got.one("location") == f"{ORIGIN}/thanks"
    assert got.ours() and got.one("cache-control") == "private"
    [conversion] = site.records()
    assert (conversion["type"], conversion["goal"], conversion["value"]) == ("conversion", "signup", 10)


# ---------------------------------------------------------------- errors


def outcome_of(call: Callable[[], Got]) -> Any:
    try:
        return call()
    except AppError as exc:
        return type(exc), str(exc)


def test_the_apps_exception_before_the_response_passes_through_untouched(adapter: Adapter, site: Site) -> None:
    sends = AppSends(raise_before=True)
    bare = outcome_of(lambda: adapter.serve(sends, Request_(), None))
    got = outcome_of(lambda: adapter.serve(sends, Request_(), site.config()))
    assert got == bare
    assert site.records() == []


@pytest.mark.parametrize("adapter", [a for a in ADAPTERS if a.raises_after_start], ids=lambda a: a.name)
def test_the_apps_exception_after_its_head_passes_through_and_nothing_is_recorded(adapter: Adapter,
                                                                                  site: Site) -> None:
    sends = AppSends(chunks=[PAGE[:40], PAGE[40:]], raise_after_start=True)
    with pytest.raises(AppError, match="after"):
        adapter.serve(sends, Request_(), None)
    with pytest.raises(AppError, match="after"):
        adapter.serve(sends, Request_(), site.config())
    assert site.records() == []  # the page never went out


# ---------------------------------------------------------------- our endpoints


def test_the_consent_endpoint_answers_alike_everywhere(adapter: Adapter, site: Site) -> None:
    request = Request_(method="POST", path="/_personalize/consent", cookie=None, origin=ORIGIN,
                       body=b'{"analytics": true, "personalization": true}', content_type="application/json")
    got = adapter.serve(AppSends(raise_before=True), request, site.config())  # the app is never asked
    assert got.status == 204
    assert got.one("cache-control") == "no-store"
    [cookie] = got.ours()
    assert cookie.startswith("pmw_consent=analytics=1&personalization=1")


def test_the_event_endpoint_answers_alike_everywhere(adapter: Adapter, site: Site) -> None:
    request = Request_(method="POST", path="/_personalize/event", origin=ORIGIN,
                       body=b'{"name": "video_played", "value": 3}', content_type="application/json")
    got = adapter.serve(AppSends(raise_before=True), request, site.config())
    assert got.status == 202
    [event] = site.records()
    assert (event["type"], event["event"], event["value"]) == ("event", "video_played", 3)


def _a_visitor(adapter: Adapter, site: Site) -> tuple[str, str]:
    """(Cookie header of a consenting visitor with an id, that id), its page view in the sink."""
    first = adapter.serve(AppSends(), Request_(), site.config())
    id_cookie = first.ours()[0].split(";")[0]
    [visitor] = {r["visitor"] for r in site.records()} - {None}
    return f"{ADAPTER_CONSENT}; {id_cookie}", visitor


PRIVACY = "/_personalize/privacy"


def test_the_privacy_endpoint_downloads_alike_everywhere(adapter: Adapter, site: Site) -> None:
    cookie, visitor = _a_visitor(adapter, site)
    got = adapter.serve(AppSends(raise_before=True), Request_(path=PRIVACY, cookie=cookie), site.config())
    assert got.status == 200
    assert got.one("content-type") == "application/json" and got.one("cache-control") == "no-store"
    assert got.one("content-disposition") == 'attachment; filename="personal-data.json"'
    held = json.loads(got.body)
    assert held["visitor_ids"] == [visitor]
    assert sorted(r["type"] for r in held["records"]["jsonl"]) == ["exposure", "pageview"]
    assert got.ours() == []  # not a visit: the id cookie is neither refreshed nor expired


def test_the_privacy_endpoint_erases_alike_everywhere(adapter: Adapter, site: Site) -> None:
    cookie, visitor = _a_visitor(adapter, site)
    adapter.serve(AppSends(), Request_(), site.config())  # somebody else
    request = Request_(method="POST", path=PRIVACY, cookie=cookie, origin=ORIGIN, body=b"action=erase&next=/done",
                       content_type="application/x-www-form-urlencoded")
    got = adapter.serve(AppSends(raise_before=True), request, site.config())
    assert (got.status, got.one("location")) == (303, "/done")
    [expired] = got.ours()
    assert expired.split(";")[0] == "pmw_id=" and "Max-Age=0" in expired
    left = {r["visitor"] for r in site.records()}
    assert visitor not in left and len(left) == 1  # the other visitor's records stay


def test_the_privacy_endpoint_without_an_id_or_from_elsewhere_answers_alike_everywhere(adapter: Adapter,
                                                                                       site: Site) -> None:
    cookie, _ = _a_visitor(adapter, site)
    nobody = adapter.serve(AppSends(raise_before=True), Request_(path=PRIVACY), site.config())
    assert nobody.status == 404 and json.loads(nobody.body)["error"] == "no_visitor_id"
    elsewhere = adapter.serve(AppSends(raise_before=True),
                              Request_(method="POST", path=PRIVACY, cookie=cookie, origin="https://evil.example",
                                       body=b"action=erase", content_type="application/x-www-form-urlencoded"),
                              site.config())
    assert elsewhere.status == 403 and elsewhere.ours() == []
    assert len(site.records()) == 2  # pageview and exposure, untouched


def test_the_stats_endpoint_exists_only_in_debug(adapter: Adapter, site: Site) -> None:
    request = Request_(path="/_personalize/stats")
    quiet = adapter.serve(AppSends(status=404, chunks=[b"app's own"]), request, site.config())
    assert (quiet.status, quiet.body) == (404, b"app's own")
    debug = adapter.serve(AppSends(raise_before=True), request, site.config(debug=True))
    assert debug.status == 200 and "sinks" in json.loads(debug.body)


# ---------------------------------------------------------------- reading the visitor

PADDING = "; ".join(f"other{i}={'x' * 90}" for i in range(100))  # 9.6 KB of other sites' cookies


def test_a_refusal_after_kilobytes_of_other_cookies_is_seen(adapter: Adapter, site: Site) -> None:
    refusal = "pmw_consent=analytics=0&personalization=0&advertising=0"
    got = adapter.serve(AppSends(), Request_(cookie=f"{PADDING}; {refusal}"), site.config(consent={"mode": "opt-out"}))
    assert got.ours() == []  # no id cookie for a visitor who refused
    assert [r["visitor"] for r in site.records()] == [None, None]


def test_a_consenting_visitor_after_kilobytes_of_other_cookies_keeps_the_profile(adapter: Adapter,
                                                                                 site: Site) -> None:
    first = adapter.serve(AppSends(), Request_(), site.config())
    id_cookie = first.ours()[0].split(";")[0]
    again = adapter.serve(AppSends(), Request_(cookie=f"{PADDING}; {ADAPTER_CONSENT}; {id_cookie}"), site.config())
    [cookie] = again.ours()
    assert "Max-Age=0" not in cookie  # not wiped
    visitors = {r["visitor"] for r in site.records()}
    assert len(visitors) == 1 and None not in visitors  # the same visitor both times


def test_a_cookie_header_too_long_to_read_whole_fails_closed(adapter: Adapter, site: Site) -> None:
    huge = "; ".join(f"o{i}={'x' * 1000}" for i in range(70))
    got = adapter.serve(AppSends(), Request_(cookie=f"{ADAPTER_CONSENT}; pmw_id=abc; {huge}"),
                        site.config(consent={"mode": "opt-out"}))
    assert got.ours() == []  # neither a new id (consent unknown) nor an expired one (a profile may be there)
    assert got.body == PAGE.replace(DEFAULT, WELCOME.encode())  # request-only personalization still works
    assert [r["visitor"] for r in site.records()] == [None, None]


def test_request_text_reaches_the_log_escaped(adapter: Adapter, site: Site, caplog: pytest.LogCaptureFixture) -> None:
    broken = AppSends(chunks=[b"<!-- personalize:hero -->never closed"])
    with caplog.at_level("WARNING", logger="personalize_mw"):
        adapter.serve(broken, Request_(path="/x%0A2026-12-02 INFO forged"), site.config())
    [message] = [r.getMessage() for r in caplog.records if "markers on" in r.getMessage()]
    assert "\n" not in message and "forged" in message


# ---------------------------------------------------------------- merge fields


MERGE = {"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "named", "id": "named",
                             "template": "<p>Hi {{ visitor.traits.first_name }} of {{ visitor.traits.company }}</p>"}]}}


def _merge_view(**fields: Any) -> Callable[[Any], None]:
    def view(request: Any) -> None:
        assert personalize_mw.context(request, **fields) is True
    return view


def test_merge_fields_from_view_code_fill_the_template(adapter: Adapter, site: Site) -> None:
    sends = AppSends(view=_merge_view(first_name="Ada <3", company="Acme"))
    config = site.config(slots=MERGE)
    got = adapter.serve(sends, Request_(), config)
    assert got.body == PAGE.replace(DEFAULT, b"<p>Hi Ada &lt;3 of Acme</p>")  # escaped like any variable
    records = site.records()
    assert sorted(r["type"] for r in records) == ["exposure", "pageview"]
    assert all(r["props"] is None for r in records)  # not recorded unless the YAML names them
    assert not any("Ada" in json.dumps(r) or "Acme" in json.dumps(r) for r in records)
    loaded = personalize_mw.load_config(config)
    codec = VisitorCodec(loaded.secret_keys, loaded.cookie.name, 3600)
    profile = codec.load(got.ours()[0].split("=", 1)[1].split(";", 1)[0])
    assert profile is not None  # the cookie is read back, and holds neither value
    assert "Ada" not in json.dumps(profile.to_payload()) and "Acme" not in json.dumps(profile.to_payload())


def test_a_missing_merge_field_keeps_the_blocks_own_content(adapter: Adapter, site: Site) -> None:
    sends = AppSends(view=_merge_view(company="Acme"))  # no first_name
    got = adapter.serve(sends, Request_(), site.config(slots=MERGE))
    assert got.body == PAGE  # the author's default, not "Hi  of Acme"
    assert site.types() == ["pageview"]  # nothing shown, no exposure


def test_a_template_default_stands_in_for_a_missing_merge_field(adapter: Adapter, site: Site) -> None:
    slots = {"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "named", "template":
                                 "<p>Hi {{ visitor.traits.first_name | default('there') }}</p>"}]}}
    got = adapter.serve(AppSends(), Request_(), site.config(slots=slots))
    assert got.body == PAGE.replace(DEFAULT, b"<p>Hi there</p>")


def test_merge_fields_named_in_the_yaml_are_recorded_with_analytics_consent_only(adapter: Adapter,
                                                                                 site: Site) -> None:
    sends = AppSends(view=_merge_view(first_name="Ada", company="Acme"))
    config = site.config(slots=MERGE, merge_fields={"record": ["company"]})
    adapter.serve(sends, Request_(), config)
    adapter.serve(sends, Request_(cookie=None), config)  # opt-in, no consent: nothing about the person
    records = site.records()
    consented = [r for r in records if r["consent"]["analytics"]]
    assert consented and all(r["props"] == {"company": "Acme"} for r in consented)
    refused = [r for r in records if not r["consent"]["analytics"]]
    assert refused and all(r["props"] is None for r in refused)


def test_a_recorded_merge_field_reaches_the_pageview_of_a_page_nothing_changes(adapter: Adapter,
                                                                                site: Site) -> None:
    # Analytics consent without personalization, no markers: the record is worked out after the page went out.
    plain = b"<html><body>no slots here</body></html>"
    sends = AppSends(chunks=[plain], view=_merge_view(company="Acme", first_name="Ada"))
    request = Request_(cookie="pmw_consent=analytics=1&personalization=0&advertising=0")
    got = adapter.serve(sends, request, site.config(merge_fields={"record": ["company"]}))
    assert got.body == plain and got.ours() == []
    (record,) = site.records()
    assert (record["type"], record["props"], record["visitor"]) == ("pageview", {"company": "Acme"}, None)


def test_merge_fields_outside_the_middleware_are_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    assert personalize_mw.context({"type": "http"}, first_name="Ada") is False
    with pytest.raises(ValueError, match="merge field"):
        personalize_mw.context({}, first_name=["not", "a", "scalar"])


def test_a_template_cannot_hand_a_merge_field_to_the_next_visitor(adapter: Adapter, site: Site) -> None:
    # The sandbox lets a template call dict.update(): each render gets its own copy of the fields.
    slots = {"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "named", "template":
                                 "<p>{{ visitor.traits.seen | default('first') }}</p>"
                                 "{{ visitor.traits.update(seen='again') or '' }}"}]}}
    config = site.config(slots=slots)
    for _ in range(2):
        given = adapter.serve(AppSends(view=_merge_view(first_name="Ada")), Request_(), config)
        assert given.body == PAGE.replace(DEFAULT, b"<p>first</p>")  # its own copy, changed and gone
        # Without merge fields the shared empty mapping refuses the write: the default, nothing carried over.
        assert adapter.serve(AppSends(), Request_(), config).body == PAGE
