"""The WSGI adapter against the response contract and PEP 3333.

Flask apps run through Flask's test client; raw WSGI apps through a small
hand-written server that enforces the start_response/exc_info rules. Every
stack has werkzeug's LintMiddleware both inside and outside our middleware,
and its warnings are errors here: it checks, among others, that Content-Length
matches the bytes sent and that close() reaches the app's iterable.
"""

from __future__ import annotations

import gzip
import logging
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import flask
import pytest
from conftest import ADAPTER_CONSENT, ADAPTER_PAGE, ADAPTER_WELCOME, AdapterSetup
from werkzeug.middleware.lint import HTTPWarning, LintMiddleware, WSGIWarning
from werkzeug.test import EnvironBuilder

import personalize_mw.wsgi
import personalize_mw.core.response
from personalize_mw import PersonalizeWSGIMiddleware
from personalize_mw.core.personalizer import Personalizer

pytestmark = [pytest.mark.filterwarnings("error::werkzeug.middleware.lint.WSGIWarning"),
              pytest.mark.filterwarnings("error::werkzeug.middleware.lint.HTTPWarning")]

WSGIApp = Callable[..., Iterable[bytes]]
DEFAULT_HERO = b"<p>Default hero</p>"
REWRITTEN = ADAPTER_PAGE.replace(DEFAULT_HERO, ADAPTER_WELCOME)


def linted(app: WSGIApp, config: dict[str, Any]) -> tuple[WSGIApp, PersonalizeWSGIMiddleware]:
    """Lint outside and inside the middleware; returns (stack, middleware)."""
    mw = PersonalizeWSGIMiddleware(LintMiddleware(app), config=config)
    return LintMiddleware(mw), mw


# ---------------------------------------------------------------- a hand-written WSGI server


@dataclass
class Served:
    status: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    starts: list[tuple[str, bool]] = field(default_factory=list)  # (status, with exc_info)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name]


def serve(app: WSGIApp, path: str = "/", method: str = "GET", cookie: str | None = ADAPTER_CONSENT,
          on_chunk: Callable[[bytes], None] | None = None, iterate: bool = True) -> Served:
    """One request the PEP 3333 way: headers may be replaced until the first body byte is out."""
    headers = {"Cookie": cookie} if cookie else {}
    environ = EnvironBuilder(path=path, method=method, headers=headers).get_environ()
    served = Served()
    output_started = False

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
        if exc_info is not None:
            if output_started:
                raise exc_info[1].with_traceback(exc_info[2])
        elif served.starts:
            raise AssertionError("start_response called twice without exc_info")
        served.status, served.headers = status, list(response_headers)
        served.starts.append((status, exc_info is not None))
        return write

    def write(data: bytes) -> None:
        nonlocal output_started
        assert served.starts, "write() before start_response()"
        output_started = output_started or bool(data)
        served.chunks.append(data)
        if on_chunk:
            on_chunk(data)

    result = app(environ, start_response)
    try:
        if iterate:
            for chunk in result:
                if chunk:
                    write(chunk)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return served


class ClosingBody:
    """An app iterable with close(), as file wrappers and database cursors have."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed += 1


def simple_app(status: str, headers: list[tuple[str, str]], body: Iterable[bytes]) -> WSGIApp:
    def app(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        start_response(status, list(headers))
        return body
    return app


def html(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]


# ---------------------------------------------------------------- Flask through its test client


def flask_site() -> flask.Flask:
    app = flask.Flask(__name__)
    app.testing = True  # the app's exceptions propagate instead of becoming a 500 page

    @app.get("/")
    def page() -> flask.Response:
        response = flask.Response(ADAPTER_PAGE, mimetype="text/html")
        response.headers["ETag"] = '"v1"'
        response.headers["Last-Modified"] = "Tue, 24 Nov 2026 10:00:00 GMT"
        response.headers["Cache-Control"] = "public, max-age=60"
        response.headers["Vary"] = "Accept-Language"
        response.set_cookie("app_session", "s1")
        response.set_cookie("app_theme", "dark")
        return response

    @app.get("/gz")
    def gz() -> flask.Response:
        return flask.Response(gzip.compress(ADAPTER_PAGE), mimetype="text/html", headers={"Content-Encoding": "gzip"})

    @app.get("/utf16")
    def utf16() -> flask.Response:
        return flask.Response(ADAPTER_PAGE.decode().encode("utf-16"), content_type="text/html; charset=utf-16")

    @app.get("/missing")
    def missing() -> flask.Response:
        return flask.Response(ADAPTER_PAGE, status=404, mimetype="text/html")

    @app.get("/json")
    def json_view() -> flask.Response:
        return flask.jsonify(html=ADAPTER_PAGE.decode())

    @app.get("/cond")
    def conditional() -> flask.Response:
        response = flask.Response(ADAPTER_PAGE, mimetype="text/html")
        response.set_etag("v1")
        return response.make_conditional(flask.request)

    @app.get("/partial")
    def partial() -> flask.Response:
        return flask.Response(ADAPTER_PAGE[:10], status=206, mimetype="text/html",
                              headers={"Content-Range": f"bytes 0-9/{len(ADAPTER_PAGE)}"})

    @app.get("/nocontent")
    def no_content() -> flask.Response:
        return flask.Response(status=204, headers={"X-App": "1"})

    @app.get("/stream")
    def stream() -> flask.Response:
        pieces = [b"<html><!-- personalize:hero -->", b"a" * 700, b"b" * 700, b"<!-- /personalize:hero --></html>"]
        return flask.Response(iter(pieces), mimetype="text/html")

    @app.get("/broken")
    def broken_markers() -> flask.Response:
        return flask.Response(b"<html><!-- personalize:hero -->open</html>", mimetype="text/html")

    @app.post("/signup")
    def signup() -> flask.Response:
        return flask.redirect("http://localhost/thanks", code=303)

    @app.get("/boom")
    def boom() -> flask.Response:
        raise AppError("from the view")

    return app


def flask_client(config: dict[str, Any]) -> tuple[Any, PersonalizeWSGIMiddleware]:
    app = flask_site()
    app.wsgi_app, mw = linted(app.wsgi_app, config)  # type: ignore[method-assign]
    return app.test_client(use_cookies=False), mw  # no jar: our Cookie header goes through as written


def bare_client() -> Any:
    app = flask_site()
    app.wsgi_app = LintMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app.test_client(use_cookies=False)


def get(client: Any, path: str, cookie: str | None = ADAPTER_CONSENT, method: str = "GET") -> Any:
    # buffered=True: the test client closes the iterable at once, so Lint's close() checks run here.
    return client.open(path, method=method, headers={"Cookie": cookie} if cookie else {}, buffered=True)


class AppError(Exception):
    pass


def test_flask_page_is_rewritten_with_header_edits(adapter_setup: AdapterSetup) -> None:
    client, mw = flask_client(adapter_setup.config())
    response = get(client, "/")
    assert response.status_code == 200
    assert response.data == REWRITTEN
    assert int(response.headers["Content-Length"]) == len(response.data) != len(response.data.decode())
    assert "ETag" not in response.headers and "Last-Modified" not in response.headers
    assert response.headers.getlist("Cache-Control") == ["private, max-age=60"]
    assert sorted(v.strip().lower() for v in response.headers["Vary"].split(",")) == ["accept-language", "cookie"]
    cookies = response.headers.getlist("Set-Cookie")
    assert [c.split("=", 1)[0] for c in cookies] == ["app_session", "app_theme", "pmw_id"]
    records = adapter_setup.records(mw.core)
    assert [(r["type"], r["variant"]) for r in records] == [("pageview", None), ("exposure", "welcome")]


@pytest.mark.parametrize("path", ["/gz", "/utf16", "/missing", "/json", "/partial"])
def test_flask_responses_outside_the_contract_pass_byte_for_byte(adapter_setup: AdapterSetup, path: str) -> None:
    client, _ = flask_client(adapter_setup.config())
    want, got = get(bare_client(), path), get(client, path)
    assert (got.status, got.headers.to_wsgi_list(), got.data) == (want.status, want.headers.to_wsgi_list(), want.data)


def test_flask_204_passes_byte_for_byte(adapter_setup: AdapterSetup) -> None:
    client, _ = flask_client(adapter_setup.config())
    with warnings.catch_warnings():
        # Werkzeug drops Content-Length from a 204, and Lint asks for "0": Flask's quirk, not ours.
        warnings.filterwarnings("ignore", "204 responses must have an empty content length", HTTPWarning)
        want, got = get(bare_client(), "/nocontent"), get(client, "/nocontent")
    assert got.status_code == 204
    assert (got.headers.to_wsgi_list(), got.data) == (want.headers.to_wsgi_list(), b"")


def test_conditional_request_304_passes(adapter_setup: AdapterSetup) -> None:
    client, _ = flask_client(adapter_setup.config())
    headers = {"Cookie": ADAPTER_CONSENT, "If-None-Match": '"v1"'}
    want = bare_client().get("/cond", headers=headers, buffered=True)
    got = client.get("/cond", headers=headers, buffered=True)
    assert got.status_code == 304
    assert (got.headers.to_wsgi_list(), got.data) == (want.headers.to_wsgi_list(), want.data)


def test_flask_head_keeps_status_and_length_and_gains_the_cache_headers_of_get(adapter_setup: AdapterSetup) -> None:
    client, _ = flask_client(adapter_setup.config())
    with warnings.catch_warnings():
        # Werkzeug empties HEAD bodies but keeps the length; Lint flags that in Flask itself.
        warnings.filterwarnings("ignore", "Content-Length and the number of bytes", WSGIWarning)
        want, got = get(bare_client(), "/", method="HEAD"), get(client, "/", method="HEAD")
    assert (got.status, got.data) == (want.status, b"")
    personalized = get(client, "/")
    assert personalized.data != want.data  # GET of this page does fill its slot

    def head_fields(response: Any) -> list[tuple[str, str]]:
        return [(n, v) for n, v in response.headers.to_wsgi_list()
                if n.lower() != "content-length" and not v.startswith("pmw_id=")]

    assert head_fields(got) == head_fields(personalized)  # the validators and cache headers GET has
    assert "ETag" in want.headers and "ETag" not in got.headers
    assert int(got.headers["Content-Length"]) == len(ADAPTER_PAGE)  # the app's length, not a recomputed 0


def test_flask_stream_over_the_buffer_limit_passes_unmodified(adapter_setup: AdapterSetup) -> None:
    client, mw = flask_client(adapter_setup.config(buffer_limit=1024))
    response = get(client, "/stream")
    assert response.data == b"<html><!-- personalize:hero -->" + b"a" * 700 + b"b" * 700 + b"<!-- /personalize:hero --></html>"
    assert response.headers["Set-Cookie"].startswith("pmw_id=")
    assert [r["type"] for r in adapter_setup.records(mw.core)] == ["pageview"]


def test_flask_goal_redirect_records_a_conversion_and_sets_the_cookie(adapter_setup: AdapterSetup) -> None:
    client, mw = flask_client(adapter_setup.config())
    response = client.post("/signup", headers={"Cookie": ADAPTER_CONSENT}, buffered=True)
    assert response.status_code == 303 and response.headers["Location"] == "http://localhost/thanks"
    assert response.headers["Set-Cookie"].startswith("pmw_id=")
    assert response.headers["Cache-Control"] == "private"
    records = adapter_setup.records(mw.core)
    assert [(r["type"], r["goal"], r["value"]) for r in records] == [("conversion", "signup", 10)]


def test_flask_app_exception_propagates(adapter_setup: AdapterSetup) -> None:
    client, _ = flask_client(adapter_setup.config())
    with pytest.raises(AppError, match="from the view"):
        get(client, "/boom")


def test_flask_malformed_markers_warn_once_per_path(adapter_setup: AdapterSetup,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    client, _ = flask_client(adapter_setup.config())
    with caplog.at_level(logging.WARNING, logger="personalize_mw"):
        for _ in range(3):
            assert get(client, "/broken").data == b"<html><!-- personalize:hero -->open</html>"
    assert len([r for r in caplog.records if "markers on '/broken'" in r.getMessage()]) == 1


def test_flask_internal_failure_serves_the_original(adapter_setup: AdapterSetup, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def broken(self: Personalizer, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("core bug")

    want = get(bare_client(), "/")
    monkeypatch.setattr(Personalizer, "visit", broken)
    client, mw = flask_client(adapter_setup.config())
    with caplog.at_level(logging.ERROR, logger="personalize_mw"):
        got = get(client, "/")
    assert (got.status, got.headers.to_wsgi_list(), got.data) == (want.status, want.headers.to_wsgi_list(), want.data)
    assert "internal error" in caplog.text
    assert adapter_setup.records(mw.core) == []


def test_header_edit_failure_serves_the_original(adapter_setup: AdapterSetup, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("header bug")

    want = get(bare_client(), "/")
    monkeypatch.setattr(personalize_mw.core.response, "edit_headers", broken)
    client, mw = flask_client(adapter_setup.config())
    got = get(client, "/")
    assert (got.status, got.headers.to_wsgi_list(), got.data) == (want.status, want.headers.to_wsgi_list(), want.data)
    assert adapter_setup.records(mw.core) == []


def test_flask_variant_failing_to_render_keeps_default_and_no_exposure(adapter_setup: AdapterSetup) -> None:
    client, mw = flask_client(adapter_setup.config())
    response = get(client, "/?variant=broken")
    assert response.data == ADAPTER_PAGE
    assert response.headers.getlist("Set-Cookie")[-1].startswith("pmw_id=")
    assert [r["type"] for r in adapter_setup.records(mw.core)] == ["pageview"]


# ---------------------------------------------------------------- raw WSGI apps and PEP 3333


def test_start_response_called_late_from_inside_a_generator(adapter_setup: AdapterSetup) -> None:
    def late(content_type: str) -> WSGIApp:
        def app(environ: dict[str, Any], start_response: Callable) -> Iterator[bytes]:
            start_response("200 OK", [("Content-Type", content_type)])
            yield ADAPTER_PAGE[:30]
            yield ADAPTER_PAGE[30:]
        return app

    stack, _ = linted(late("text/html"), adapter_setup.config())
    served = serve(stack)
    assert served.body == REWRITTEN and served.header("content-length") == [str(len(REWRITTEN))]
    stack, _ = linted(late("text/plain"), adapter_setup.config())
    served = serve(stack)
    assert served.body == ADAPTER_PAGE and served.headers == [("Content-Type", "text/plain")]


def test_write_callable(adapter_setup: AdapterSetup) -> None:
    def app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        write = start_response("200 OK", html(ADAPTER_PAGE))
        write(ADAPTER_PAGE[:50])
        write(ADAPTER_PAGE[50:])
        return []

    stack, mw = linted(app, adapter_setup.config())
    served = serve(stack)
    assert served.body == REWRITTEN and served.header("content-length") == [str(len(REWRITTEN))]
    assert [r["type"] for r in adapter_setup.records(mw.core)] == ["pageview", "exposure"]


def test_write_callable_over_the_buffer_limit(adapter_setup: AdapterSetup) -> None:
    big = ADAPTER_PAGE + b"<!-- pad -->" * 200

    def app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        write = start_response("200 OK", html(big))
        for i in range(0, len(big), 500):
            write(big[i:i + 500])
        return [b""]

    stack, _ = linted(app, adapter_setup.config(buffer_limit=1024))
    served = serve(stack)
    assert served.body == big and served.header("content-length") == [str(len(big))]


def test_html_over_the_buffer_limit_streams(adapter_setup: AdapterSetup) -> None:
    chunks = [b"<html><!-- personalize:hero -->" + b"a" * 600, b"b" * 600, b"c" * 600, b"<!-- /personalize:hero -->"]
    events: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        for i, chunk in enumerate(chunks):
            events.append(f"app made {i}")
            yield chunk

    stack, _ = linted(app, adapter_setup.config(buffer_limit=1024))
    served = serve(stack, on_chunk=lambda data: events.append("client got data"))
    assert served.body == b"".join(chunks)
    # The first bytes reach the client before the app has made its last chunk.
    assert events.index("client got data") < events.index(f"app made {len(chunks) - 1}")


def test_server_sent_events_stream_through_untouched(adapter_setup: AdapterSetup) -> None:
    events: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        for i in range(3):
            events.append(f"app made {i}")
            yield b"data: %d\n\n" % i

    stack, _ = linted(app, adapter_setup.config())
    served = serve(stack, on_chunk=lambda data: events.append(f"client got {data!r}"))
    assert served.headers == [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
    assert events == ["app made 0", "client got b'data: 0\\n\\n'", "app made 1", "client got b'data: 1\\n\\n'",
                      "app made 2", "client got b'data: 2\\n\\n'"]


def test_disabled_middleware_passes_everything(adapter_setup: AdapterSetup) -> None:
    app = simple_app("200 OK", html(ADAPTER_PAGE), [ADAPTER_PAGE])
    stack, mw = linted(app, adapter_setup.config(enabled=False))
    served = serve(stack)
    assert (served.headers, served.body) == (html(ADAPTER_PAGE), ADAPTER_PAGE)
    assert serve(stack, path="/_personalize/consent").body == ADAPTER_PAGE  # no endpoint either
    assert adapter_setup.records(mw.core) == []


def test_start_response_twice_with_exc_info_before_output_on_a_page(adapter_setup: AdapterSetup) -> None:
    def app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        try:
            raise ValueError("template failed")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", "5")],
                           sys.exc_info())
        return [b"oops!"]

    stack, _ = linted(app, adapter_setup.config())
    served = serve(stack)
    assert (served.status, served.body) == ("500 Internal Server Error", b"oops!")
    assert served.headers == [("Content-Type", "text/plain"), ("Content-Length", "5")]


def test_start_response_twice_with_exc_info_after_a_passed_head(adapter_setup: AdapterSetup) -> None:
    # The first head was passed on at once (not HTML) but no body byte is out yet:
    # PEP 3333 lets the app replace it, and the server decides.
    def app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        try:
            raise ValueError("serializer failed")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"oops!"]

    stack, _ = linted(app, adapter_setup.config())
    served = serve(stack)
    assert (served.status, served.body) == ("500 Internal Server Error", b"oops!")
    assert served.starts[-1] == ("500 Internal Server Error", True)


def test_exc_info_after_output_reraises_the_apps_error(adapter_setup: AdapterSetup) -> None:
    error = AppError("failed mid-stream")

    def app(environ: dict[str, Any], start_response: Callable) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        try:
            raise error
        except AppError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"never"

    stack, _ = linted(app, adapter_setup.config())
    with pytest.raises(AppError) as caught:
        serve(stack)
    assert caught.value is error


CLOSE_CASES: dict[str, tuple[str, list[tuple[str, str]], list[bytes], str, bytes]] = {
    # name: (status, headers, chunks, path, expected body)
    "pass-through json": ("200 OK", [("Content-Type", "application/json")], [b'{"a": 1}'], "/", b'{"a": 1}'),
    "rewritten page": ("200 OK", html(ADAPTER_PAGE), [ADAPTER_PAGE[:20], ADAPTER_PAGE[20:]], "/", REWRITTEN),
    "page over the limit": ("200 OK", [("Content-Type", "text/html")], [ADAPTER_PAGE, b"x" * 2000], "/",
                            ADAPTER_PAGE + b"x" * 2000),
    "goal redirect": ("303 See Other", [("Location", "http://localhost/thanks"), ("Content-Length", "0")], [],
                      "/signup", b""),
}


@pytest.mark.parametrize("case", CLOSE_CASES, ids=list(CLOSE_CASES))
def test_close_reaches_the_apps_iterable(adapter_setup: AdapterSetup, case: str) -> None:
    status, headers, chunks, path, expected = CLOSE_CASES[case]
    body = ClosingBody(chunks)
    stack, _ = linted(simple_app(status, headers, body), adapter_setup.config(buffer_limit=1024))
    served = serve(stack, path=path)
    assert served.body == expected
    assert body.closed == 1


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
def test_close_reaches_the_apps_iterable_when_the_server_never_iterates(
        adapter_setup: AdapterSetup, content_type: str) -> None:
    # A client that disconnects before the first chunk: the server only calls close().
    body = ClosingBody([ADAPTER_PAGE])
    mw = PersonalizeWSGIMiddleware(simple_app("200 OK", [("Content-Type", content_type)], body),
                                   config=adapter_setup.config())
    serve(mw, iterate=False)
    assert body.closed == 1


def test_app_raising_at_call_propagates(adapter_setup: AdapterSetup) -> None:
    error = AppError("at call time")

    def app(environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        raise error

    with pytest.raises(AppError) as caught:
        serve(PersonalizeWSGIMiddleware(app, config=adapter_setup.config()))
    assert caught.value is error


def test_app_raising_while_iterating_propagates_and_closes(adapter_setup: AdapterSetup) -> None:
    error = AppError("while iterating")
    closed: list[bool] = []

    class Failing(ClosingBody):
        def __iter__(self) -> Iterator[bytes]:
            yield ADAPTER_PAGE[:10]
            raise error

        def close(self) -> None:
            closed.append(True)

    for content_type in ("text/html", "text/plain"):
        closed.clear()
        stack, _ = linted(simple_app("200 OK", [("Content-Type", content_type)], Failing([])), adapter_setup.config())
        with pytest.raises(AppError) as caught:
            serve(stack)
        assert caught.value is error
        assert closed == [True]


def test_the_environ_read_as_headers() -> None:
    """Header names from HTTP_* keys and CONTENT_TYPE, read when asked, as a dict of them would answer."""
    from personalize_mw.wsgi import headers_from_environ

    environ = {"HTTP_USER_AGENT": "UA", "HTTP_X_FORWARDED_FOR": "a, b", "CONTENT_TYPE": "", "PATH_INFO": "/",
               "HTTP_COOKIE": "a=1", "wsgi.input": object(), "HTTP_ACCEPT_LANGUAGE": "de"}
    headers = headers_from_environ(environ)
    expected = {"user-agent": "UA", "x-forwarded-for": "a, b", "cookie": "a=1", "accept-language": "de"}
    assert dict(headers) == expected and len(headers) == 4
    assert [headers.get(n) for n in ("cookie", "Cookie", "content-type", "path-info", "referer")] == [
        "a=1", "a=1", None, None, None]
    assert headers.get("content-type", "") == "" and "referer" not in headers and "user-agent" in headers
    environ["CONTENT_TYPE"] = "text/plain"
    assert headers["content-type"] == "text/plain"
    with pytest.raises(KeyError):
        headers["referer"]
