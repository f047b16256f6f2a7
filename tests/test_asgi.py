"""The ASGI adapter against the response contract.

Raw ASGI apps are driven with hand-written scope/receive/send so that every
message can be compared; Starlette apps go through TestClient or httpx's
ASGITransport, the way a site would run them.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from contextlib import asynccontextmanager
from typing import Any, Awaitable, Callable

import httpx
import pytest
from conftest import ADAPTER_CONSENT, ADAPTER_PAGE, ADAPTER_WELCOME, AdapterSetup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

import personalize_mw.asgi
import personalize_mw.core.response
from personalize_mw import PersonalizeMiddleware
from personalize_mw.core.personalizer import Personalizer

Message = dict[str, Any]
ASGIApp = Callable[..., Awaitable[None]]

DEFAULT_HERO = b"<p>Default hero</p>"


# ---------------------------------------------------------------- a hand-written ASGI server


def http_scope(method: str = "GET", path: str = "/", query: bytes = b"", cookie: str | None = ADAPTER_CONSENT,
               extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    headers = [(b"host", b"testserver"), (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64)")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": query, "headers": headers, "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80), "extensions": extensions or {}}


async def drive(app: ASGIApp, scope: dict[str, Any], on_send: Callable[[Message], None] | None = None) -> list[Message]:
    """Run one request; return every message the app (through the middleware) sent."""
    sent: list[Message] = []
    requested = False
    finished = asyncio.Event()

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if on_send is not None:
            on_send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    await asyncio.wait_for(app(scope, receive, send), timeout=10)  # a deadlock guard, not a measurement
    return sent


def run(app: ASGIApp, scope: dict[str, Any], **kwargs: Any) -> list[Message]:
    return asyncio.run(drive(app, scope, **kwargs))


def body_of(messages: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def wire(messages: list[Message]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """What a client would see: status, headers in order, the body."""
    return messages[0]["status"], list(messages[0]["headers"]), body_of(messages)


def header_values(start: Message, name: bytes) -> list[bytes]:
    return [v for n, v in start["headers"] if n.lower() == name]


def raw_app(status: int, headers: list[tuple[bytes, bytes]], body: bytes, chunks: int = 1) -> ASGIApp:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        size = max(1, len(body) // chunks)
        parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
        for i, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < len(parts) - 1})
    return app


def html_headers(body: bytes, content_type: bytes = b"text/html; charset=utf-8") -> list[tuple[bytes, bytes]]:
    return [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]


# ---------------------------------------------------------------- what gets rewritten, what passes


def test_html_page_is_rewritten_with_content_length_in_bytes(adapter_setup: AdapterSetup) -> None:
    app = PersonalizeMiddleware(raw_app(200, html_headers(ADAPTER_PAGE), ADAPTER_PAGE, chunks=3),
                                config=adapter_setup.config())
    messages = run(app, http_scope())
    start, body = messages[0], body_of(messages)
    assert start["status"] == 200
    assert body == ADAPTER_PAGE.replace(DEFAULT_HERO, ADAPTER_WELCOME)
    assert header_values(start, b"content-length") == [str(len(body)).encode()]
    assert len(body) != len(body.decode("utf-8"))  # the variant is not ASCII: bytes were counted
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]


PASS_THROUGH = {
    "utf-16 html": (200, [(b"content-type", b"text/html; charset=utf-16")], ADAPTER_PAGE.decode().encode("utf-16")),
    # The charset header decides, even when the bytes happen to hold ASCII markers.
    "utf-16 declared, ascii bytes": (200, [(b"content-type", b"text/html; charset=UTF-16")], ADAPTER_PAGE),
    "gzip html": (200, [(b"content-type", b"text/html"), (b"content-encoding", b"gzip")], gzip.compress(ADAPTER_PAGE)),
    "br-labelled html": (200, [(b"content-type", b"text/html"), (b"content-encoding", b"br")], ADAPTER_PAGE),
    "204": (204, [(b"x-app", b"1")], b""),
    "304": (304, [(b"etag", b'"v1"'), (b"cache-control", b"public, max-age=60")], b""),
    "206": (206, [(b"content-type", b"text/html"), (b"content-range", b"bytes 0-9/200")], ADAPTER_PAGE[:10]),
    "404 html": (404, [(b"content-type", b"text/html")], ADAPTER_PAGE),
    "500 html": (500, [(b"content-type", b"text/html")], ADAPTER_PAGE),
    "json": (200, [(b"content-type", b"application/json")], b'{"html": "<!-- personalize:hero -->x<!-- /personalize:hero -->"}'),
    "no content-type": (200, [], ADAPTER_PAGE),
}


@pytest.mark.parametrize("case", PASS_THROUGH, ids=list(PASS_THROUGH))
def test_responses_outside_the_contract_pass_message_for_message(adapter_setup: AdapterSetup, case: str) -> None:
    status, headers, body = PASS_THROUGH[case]
    bare = raw_app(status, headers + [(b"content-length", str(len(body)).encode())], body, chunks=2)
    expected = run(bare, http_scope())
    got = run(PersonalizeMiddleware(bare, config=adapter_setup.config()), http_scope())
    assert got == expected  # status, every header in order, every body chunk


def test_head_passes_the_body_byte_for_byte_with_the_cache_headers_of_get(adapter_setup: AdapterSetup) -> None:
    # Starlette sends the whole body on HEAD and leaves stripping to the server.
    bare = raw_app(200, html_headers(ADAPTER_PAGE), ADAPTER_PAGE)
    expected = run(bare, http_scope("HEAD"))
    got = run(PersonalizeMiddleware(bare, config=adapter_setup.config()), http_scope("HEAD"))
    assert got[1:] == expected[1:]
    assert got[0]["headers"] == expected[0]["headers"] + [(b"cache-control", b"private"), (b"vary", b"Cookie")]
    assert header_values(got[0], b"content-length") == [str(len(ADAPTER_PAGE)).encode()]


def test_starlette_pass_through_responses_are_identical_through_testclient(adapter_setup: AdapterSetup) -> None:
    async def gz(request: Request) -> Response:
        return Response(gzip.compress(ADAPTER_PAGE), media_type="text/html", headers={"content-encoding": "gzip"})

    async def utf16(request: Request) -> Response:
        return HTMLResponse(ADAPTER_PAGE.decode().encode("utf-16"), headers={"content-type": "text/html; charset=utf-16"})

    async def missing(request: Request) -> Response:
        return HTMLResponse(ADAPTER_PAGE, status_code=404)

    async def not_modified(request: Request) -> Response:
        return Response(status_code=304, headers={"etag": '"v1"'})

    async def page(request: Request) -> Response:
        return HTMLResponse(ADAPTER_PAGE, headers={"etag": '"v1"'})

    def site() -> Starlette:
        return Starlette(routes=[Route("/gz", gz), Route("/utf16", utf16), Route("/missing", missing),
                                 Route("/nm", not_modified), Route("/page", page, methods=["GET", "HEAD"])])

    bare = TestClient(site(), cookies={"pmw_consent": "analytics=1&personalization=1&advertising=0"})
    wrapped = TestClient(PersonalizeMiddleware(site(), config=adapter_setup.config()),
                         cookies={"pmw_consent": "analytics=1&personalization=1&advertising=0"})
    for method, path in [("GET", "/gz"), ("GET", "/utf16"), ("GET", "/missing"), ("GET", "/nm")]:
        want, got = bare.request(method, path), wrapped.request(method, path)
        assert (got.status_code, got.headers.raw, got.content) == (want.status_code, want.headers.raw, want.content)
    assert "set-cookie" in wrapped.get("/page").headers  # the same client does get a page personalized


def test_disabled_middleware_passes_everything(adapter_setup: AdapterSetup) -> None:
    bare = raw_app(200, html_headers(ADAPTER_PAGE), ADAPTER_PAGE)
    mw = PersonalizeMiddleware(bare, config=adapter_setup.config(enabled=False))
    assert run(mw, http_scope()) == run(bare, http_scope())
    assert body_of(run(mw, http_scope("POST", "/_personalize/consent"))) == ADAPTER_PAGE  # no endpoint either
    assert adapter_setup.records(mw.core) == []


# ---------------------------------------------------------------- header edits on a rewritten page


def header_app() -> Starlette:
    async def page(request: Request) -> Response:
        response = HTMLResponse(ADAPTER_PAGE, headers={
            "etag": '"v1"', "last-modified": "Tue, 24 Nov 2026 10:00:00 GMT",
            "cache-control": "public, max-age=60", "vary": "Accept-Language"})
        response.set_cookie("app_session", "s1")
        response.set_cookie("app_theme", "dark")
        return response
    return Starlette(routes=[Route("/", page)])


def test_rewritten_response_headers(adapter_setup: AdapterSetup) -> None:
    client = TestClient(PersonalizeMiddleware(header_app(), config=adapter_setup.config()))
    response = client.get("/", headers={"cookie": ADAPTER_CONSENT})
    assert response.content == ADAPTER_PAGE.replace(DEFAULT_HERO, ADAPTER_WELCOME)
    assert int(response.headers["content-length"]) == len(response.content)
    assert "etag" not in response.headers and "last-modified" not in response.headers
    assert response.headers.get_list("cache-control") == ["private, max-age=60"]
    vary = [v.strip().lower() for v in response.headers["vary"].split(",")]
    assert sorted(vary) == ["accept-language", "cookie"]
    cookies = response.headers.get_list("set-cookie")
    assert [c.split("=", 1)[0] for c in cookies] == ["app_session", "app_theme", "pmw_id"]
    ours = cookies[2]
    for attribute in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="):
        assert attribute in ours


def test_add_middleware_one_line_integration(adapter_setup: AdapterSetup) -> None:
    app = header_app()
    app.add_middleware(PersonalizeMiddleware, config=adapter_setup.config())
    response = TestClient(app).get("/", headers={"cookie": ADAPTER_CONSENT})
    assert ADAPTER_WELCOME in response.content and "pmw_id" in response.headers["set-cookie"]


def test_without_consent_page_is_filled_from_the_request_but_no_cookie(adapter_setup: AdapterSetup) -> None:
    client = TestClient(PersonalizeMiddleware(header_app(), config=adapter_setup.config()))
    response = client.get("/")
    assert ADAPTER_WELCOME in response.content
    assert [c.split("=", 1)[0] for c in response.headers.get_list("set-cookie")] == ["app_session", "app_theme"]
    assert response.headers["cache-control"] == "private, max-age=60"  # still per request


def test_httpx_asgi_transport(adapter_setup: AdapterSetup) -> None:
    mw = PersonalizeMiddleware(header_app(), config=adapter_setup.config())

    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=mw)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get("/", headers={"cookie": ADAPTER_CONSENT})

    response = asyncio.run(fetch())
    assert response.content == ADAPTER_PAGE.replace(DEFAULT_HERO, ADAPTER_WELCOME)
    assert int(response.headers["content-length"]) == len(response.content)
    records = adapter_setup.records(mw.core)
    assert [r["type"] for r in records] == ["pageview", "exposure"]
    assert records[1]["slot"] == "hero" and records[1]["variant"] == "welcome" and records[1]["rule"] == "hello"
    assert records[0]["visitor"] is not None and records[0]["visitor"] == records[1]["visitor"]


# ---------------------------------------------------------------- streaming


def test_html_over_the_buffer_limit_streams_unmodified(adapter_setup: AdapterSetup) -> None:
    first = b"<html><!-- personalize:hero -->" + b"a" * 700
    second = b"b" * 700 + b"<!-- /personalize:hero -->"
    last = b"</html>"
    events: list[str] = []

    async def scenario() -> list[Message]:
        delivered = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": first, "more_body": True})
            await send({"type": "http.response.body", "body": second, "more_body": True})
            await delivered.wait()  # would never return if the middleware held the chunks
            events.append("app sends last")
            await send({"type": "http.response.body", "body": last})

        def on_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                events.append("client got body")
                delivered.set()

        mw = PersonalizeMiddleware(app, config=adapter_setup.config(buffer_limit=1024))
        return await drive(mw, http_scope(), on_send)

    messages = asyncio.run(scenario())
    assert events[0] == "client got body" and "app sends last" in events
    assert body_of(messages) == first + second + last
    assert messages[0]["status"] == 200 and not header_values(messages[0], b"content-length")


def test_html_under_the_limit_in_many_chunks_is_rewritten(adapter_setup: AdapterSetup) -> None:
    app = PersonalizeMiddleware(raw_app(200, [(b"content-type", b"text/html")], ADAPTER_PAGE, chunks=7),
                                config=adapter_setup.config())
    messages = run(app, http_scope())
    assert body_of(messages) == ADAPTER_PAGE.replace(DEFAULT_HERO, ADAPTER_WELCOME)
    assert header_values(messages[0], b"content-length") == [str(len(body_of(messages))).encode()]


def test_over_the_limit_records_a_pageview_but_no_exposure(adapter_setup: AdapterSetup) -> None:
    big = ADAPTER_PAGE + b"<!-- padding -->" * 200
    mw = PersonalizeMiddleware(raw_app(200, [(b"content-type", b"text/html")], big, chunks=4),
                               config=adapter_setup.config(buffer_limit=1024))
    messages = run(mw, http_scope())
    assert body_of(messages) == big
    assert [r["type"] for r in adapter_setup.records(mw.core)] == ["pageview"]


def test_server_sent_events_are_forwarded_as_they_come(adapter_setup: AdapterSetup) -> None:
    app_messages: list[Message] = []

    async def scenario() -> list[Message]:
        delivered = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            start = {"type": "http.response.start", "status": 200,
                     "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]}
            app_messages.append(start)
            await send(start)
            for i in range(3):
                delivered.clear()
                event = {"type": "http.response.body", "body": b"data: %d\n\n" % i, "more_body": i < 2}
                app_messages.append(event)
                await send(event)
                await delivered.wait()  # each event reaches the client before the next is made

        def on_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                delivered.set()

        mw = PersonalizeMiddleware(app, config=adapter_setup.config())
        return await drive(mw, http_scope(), on_send)

    got = asyncio.run(scenario())
    assert len(got) == len(app_messages) and all(a is b for a, b in zip(got, app_messages))


def test_pathsend_is_forwarded_untouched(adapter_setup: AdapterSetup) -> None:
    for content_type in (b"application/pdf", b"text/html"):
        app_messages: list[Message] = [
            {"type": "http.response.start", "status": 200,
             "headers": [(b"content-type", content_type), (b"content-length", b"1234")]},
            {"type": "http.response.pathsend", "path": "/srv/files/report"},
        ]

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            for message in app_messages:
                await send(message)

        mw = PersonalizeMiddleware(app, config=adapter_setup.config())
        got = run(mw, http_scope(extensions={"http.response.pathsend": {}}))
        assert [m["type"] for m in got] == ["http.response.start", "http.response.pathsend"]
        assert got[1] is app_messages[1]
        assert header_values(got[0], b"content-length") == [b"1234"]
        if content_type == b"application/pdf":
            assert got[0] is app_messages[0]


@pytest.mark.parametrize("content_type", [b"text/plain", b"text/html"])
def test_trailers_are_forwarded_once_after_the_body(adapter_setup: AdapterSetup, content_type: bytes) -> None:
    trailers = {"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")], "more_trailers": False}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": ADAPTER_PAGE[:40], "more_body": True})
        await send({"type": "http.response.body", "body": ADAPTER_PAGE[40:]})
        await send(trailers)

    mw = PersonalizeMiddleware(app, config=adapter_setup.config())
    got = run(mw, http_scope(extensions={"http.response.trailers": {}}))
    types = [m["type"] for m in got]
    assert types.count("http.response.start") == 1 and types[-1] == "http.response.trailers"
    assert got[-1] is trailers and got[0]["trailers"] is True
    expected = ADAPTER_PAGE.replace(DEFAULT_HERO, ADAPTER_WELCOME) if content_type == b"text/html" else ADAPTER_PAGE
    assert body_of(got) == expected


# ---------------------------------------------------------------- other scopes


def test_websocket_scope_reaches_the_app_untouched(adapter_setup: AdapterSetup) -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(text.upper())
        await websocket.close()

    client = TestClient(PersonalizeMiddleware(Starlette(routes=[WebSocketRoute("/ws", echo)]),
                                              config=adapter_setup.config()))
    with client.websocket_connect("/ws", headers={"cookie": ADAPTER_CONSENT}) as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "HELLO"

    seen: list[tuple[Any, Any, Any]] = []

    async def raw(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        pass

    scope = {"type": "websocket", "path": "/_personalize/consent", "headers": []}
    asyncio.run(PersonalizeMiddleware(raw, config=adapter_setup.config())(scope, receive, send))
    assert seen == [(scope, receive, send)]  # even on the consent path: only http is ours


def test_lifespan_is_forwarded_and_shutdown_flushes_the_queue(adapter_setup: AdapterSetup) -> None:
    phases: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        phases.append("startup")
        yield
        phases.append("shutdown")

    async def page(request: Request) -> Response:
        return HTMLResponse(ADAPTER_PAGE)

    # A minute between background flushes: only the shutdown flush can write during this test.
    config = adapter_setup.config(delivery={"queue_size": 100, "flush_interval_s": 60, "shutdown_timeout_s": 5})
    mw = PersonalizeMiddleware(Starlette(routes=[Route("/", page)], lifespan=lifespan), config=config)
    with TestClient(mw) as client:
        assert phases == ["startup"]
        client.get("/", headers={"cookie": ADAPTER_CONSENT})
        assert not adapter_setup.sink.exists() or adapter_setup.sink.read_text() == ""
    assert phases == ["startup", "shutdown"]
    lines = adapter_setup.sink.read_text("utf-8").splitlines()
    assert len(lines) == 2 and '"pageview"' in lines[0] and '"exposure"' in lines[1]


# ---------------------------------------------------------------- failures


def test_internal_failure_serves_the_original_response(adapter_setup: AdapterSetup, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    def broken(self: Personalizer, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("core bug")

    bare = header_app()
    want = TestClient(bare).get("/", headers={"cookie": ADAPTER_CONSENT})
    monkeypatch.setattr(Personalizer, "visit", broken)
    mw = PersonalizeMiddleware(header_app(), config=adapter_setup.config())
    with caplog.at_level(logging.ERROR, logger="personalize_mw"):
        got = TestClient(mw).get("/", headers={"cookie": ADAPTER_CONSENT})
    assert (got.status_code, got.headers.raw, got.content) == (want.status_code, want.headers.raw, want.content)
    assert "internal error" in caplog.text
    assert adapter_setup.records(mw.core) == []


def test_header_edit_failure_serves_the_original_and_records_no_exposure(
        adapter_setup: AdapterSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("header bug")

    want = run(raw_app(200, html_headers(ADAPTER_PAGE), ADAPTER_PAGE), http_scope())
    monkeypatch.setattr(personalize_mw.core.response, "edit_headers", broken)
    mw = PersonalizeMiddleware(raw_app(200, html_headers(ADAPTER_PAGE), ADAPTER_PAGE), config=adapter_setup.config())
    assert wire(run(mw, http_scope())) == wire(want)
    assert adapter_setup.records(mw.core) == []  # nothing of ours went out


def test_variant_that_fails_to_render_keeps_the_default_and_records_no_exposure(
        adapter_setup: AdapterSetup, caplog: pytest.LogCaptureFixture) -> None:
    mw = PersonalizeMiddleware(raw_app(200, html_headers(ADAPTER_PAGE), ADAPTER_PAGE), config=adapter_setup.config())
    with caplog.at_level(logging.WARNING, logger="personalize_mw"):
        messages = run(mw, http_scope(query=b"variant=broken"))
    assert body_of(messages) == ADAPTER_PAGE
    assert header_values(messages[0], b"content-length") == [str(len(ADAPTER_PAGE)).encode()]
    assert header_values(messages[0], b"cache-control") == [b"private"]  # the page still varies by visitor
    assert "not rendered" in caplog.text
    records = adapter_setup.records(mw.core)
    assert [r["type"] for r in records] == ["pageview"]


class AppError(Exception):
    pass


@pytest.mark.parametrize("when", ["before start", "after html start", "after json start"])
def test_the_apps_own_exception_propagates_untouched(adapter_setup: AdapterSetup, when: str) -> None:
    error = AppError("the app's own failure")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if when != "before start":
            kind = b"text/html" if when == "after html start" else b"application/json"
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]})
            await send({"type": "http.response.body", "body": b"<p>", "more_body": True})
        raise error

    mw = PersonalizeMiddleware(app, config=adapter_setup.config())
    with pytest.raises(AppError) as caught:
        run(mw, http_scope())
    assert caught.value is error


def test_app_exception_through_starlette_testclient(adapter_setup: AdapterSetup) -> None:
    async def boom(request: Request) -> Response:
        raise AppError("from the view")

    client = TestClient(PersonalizeMiddleware(Starlette(routes=[Route("/", boom)]), config=adapter_setup.config()))
    with pytest.raises(AppError, match="from the view"):
        client.get("/")


def test_malformed_markers_leave_the_page_and_warn_once_per_path(adapter_setup: AdapterSetup,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    broken = b"<html><!-- personalize:hero --><p>never closed</p></html>"
    mw = PersonalizeMiddleware(raw_app(200, html_headers(broken), broken), config=adapter_setup.config())
    with caplog.at_level(logging.WARNING, logger="personalize_mw"):
        for path in ["/a", "/a", "/a", "/b", "/b"]:
            assert body_of(run(mw, http_scope(path=path))) == broken
    warnings = [r.getMessage() for r in caplog.records if "markers on" in r.getMessage()]
    assert len(warnings) == 2 and "/a" in warnings[0] and "/b" in warnings[1]


# ---------------------------------------------------------------- goals


def test_goal_reached_by_a_redirect_records_a_conversion_and_sets_the_cookie(adapter_setup: AdapterSetup) -> None:
    async def signup(request: Request) -> Response:
        return RedirectResponse("/thanks", status_code=303)

    async def thanks(request: Request) -> Response:
        return JSONResponse({"ok": True})

    mw = PersonalizeMiddleware(Starlette(routes=[Route("/signup", signup, methods=["POST"]), Route("/thanks", thanks)]),
                               config=adapter_setup.config())
    client = TestClient(mw, follow_redirects=False)
    response = client.post("/signup", headers={"cookie": ADAPTER_CONSENT})
    assert response.status_code == 303 and response.headers["location"] == "/thanks"
    assert response.headers["set-cookie"].startswith("pmw_id=")
    assert response.headers["cache-control"] == "private"
    records = adapter_setup.records(mw.core)
    assert [(r["type"], r["goal"], r["value"]) for r in records] == [("conversion", "signup", 10)]
    assert records[0]["visitor"] is not None


def test_goal_without_consent_records_an_anonymous_conversion_and_no_cookie(adapter_setup: AdapterSetup) -> None:
    mw = PersonalizeMiddleware(raw_app(303, [(b"location", b"/thanks")], b""), config=adapter_setup.config())
    messages = run(mw, http_scope("POST", "/signup", cookie=None))
    assert not header_values(messages[0], b"set-cookie")
    records = adapter_setup.records(mw.core)
    assert [(r["type"], r["visitor"], r["session"]) for r in records] == [("conversion", None, None)]


def test_cookies_split_over_several_headers_are_all_read() -> None:
    # HTTP/2 servers may send each cookie in its own header (RFC 9113 8.2.3).
    from personalize_mw.asgi import request_context

    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
             "headers": [(b"cookie", b"a=1"), (b"cookie", b"pmw_consent=analytics=1&personalization=1&advertising=0")]}
    ctx = request_context(scope, "cf-ipcountry")
    assert ctx.headers["cookie"] == "a=1; pmw_consent=analytics=1&personalization=1&advertising=0"
