"""The WSGI adapter, native (no ASGI bridge).

    app.wsgi_app = PersonalizeWSGIMiddleware(app.wsgi_app, config="personalize.yaml")

Honours the whole WSGI contract: ``start_response`` may be called late (from
inside a generator), more than once with ``exc_info``; apps may use the
``write()`` callable; ``close()`` is always called on the app's iterable.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Callable, Generator, Iterable, Iterator

from .config import Config, load_config
from .core.consent_endpoint import MAX_BODY, EndpointResponse, handle_consent
from .core.event_endpoint import EventEndpoint
from .core.context import RequestContext
from .core.headers import edit_headers
from .core.personalizer import NOTHING, Outcome, Personalizer, Plan
from .core.request_state import STATE_KEY, RequestState
from .core.stats_endpoint import handle_stats

log = logging.getLogger("personalize_mw")

StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def headers_from_environ(environ: dict[str, Any]) -> dict[str, str]:
    """CGI-style HTTP_* keys (WSGI environ, Django's META) -> lower-case header names."""
    headers = {key[5:].replace("_", "-").lower(): value
               for key, value in environ.items() if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    return headers


def request_context(environ: dict[str, Any], country_header: str) -> RequestContext:
    headers = headers_from_environ(environ)
    host = headers.get("host") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    return RequestContext(environ.get("REQUEST_METHOD", "GET"), environ.get("wsgi.url_scheme", "http"), host,
                          full_path(environ), environ.get("QUERY_STRING", ""), headers, country_header,
                          environ.get("REMOTE_ADDR"))


def full_path(environ: dict[str, Any]) -> str:
    # PEP 3333 strings are latin-1 decoded bytes; the URL path itself is UTF-8.
    raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    try:
        return raw.encode("latin-1").decode("utf-8") or "/"
    except UnicodeError:
        return raw or "/"


class PersonalizeWSGIMiddleware:
    def __init__(self, app: WSGIApp, config: "str | dict[str, Any] | Config" = "personalize.yaml",
                 *, personalizer: Personalizer | None = None) -> None:
        self.app = app
        self.core = personalizer or Personalizer(load_config(config))
        self.events = EventEndpoint(self.core)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.core.enabled:
            environ[STATE_KEY] = None  # identify()/track() know the middleware is there, switched off
            return self.app(environ, start_response)
        path = full_path(environ)
        if path == self.core.consent_path:
            return self._consent(environ, start_response)
        if path == self.core.stats_path:
            return _respond(start_response, handle_stats(self.core, environ.get("REQUEST_METHOD", "GET")))
        if path == self.events.path:
            body = _read_body(environ, self.events.max_body)
            ctx = request_context(environ, self.core.country_header)
            return _respond(start_response, self.events.handle(ctx, body))
        state = environ[STATE_KEY] = RequestState(self.core, environ, request_context)
        response = _Response(self.core, environ, path, start_response, state)
        result = self.app(environ, response.start_response)
        if response.plan is Plan.PASS and response.head_sent:
            return result  # decided already: hand the app's iterable over untouched
        return _Body(response.iterate(result), result)

    def _consent(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = _read_body(environ, MAX_BODY)
        response = handle_consent(self.core, request_context(environ, self.core.country_header), body)
        return _respond(start_response, response)


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the body: enough to know it is too large."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(min(max(length, 0), limit + 1)) if length else b""


_REASONS = {202: "Accepted", 204: "No Content", 303: "See Other", 400: "Bad Request", 403: "Forbidden",
            405: "Method Not Allowed", 413: "Content Too Large", 429: "Too Many Requests"}


def _respond(start_response: StartResponse, response: EndpointResponse) -> Iterable[bytes]:
    start_response(f"{response.status} {_REASONS.get(response.status, 'OK')}", response.header_list())
    return [response.body]


class _Body:
    """Our body iterator; close() reaches the app's iterable even if the server never iterated."""

    __slots__ = ("_chunks", "_result")

    def __init__(self, chunks: Generator[bytes, None, None], result: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        started = inspect.getgeneratorstate(self._chunks) != inspect.GEN_CREATED
        self._chunks.close()  # a started generator closes the app's iterable in its finally
        close = getattr(self._result, "close", None)
        if not started and close is not None:
            close()


class _Response:
    """One request's response: decides at start_response, buffers pages, forwards the rest."""

    def __init__(self, core: Personalizer, environ: dict[str, Any], path: str, start_response: StartResponse,
                 state: RequestState) -> None:
        self.core = core
        self.environ = environ
        self.path = path
        self.state = state
        self.downstream = start_response
        self.plan = Plan.PASS
        self.head_sent = False
        self.status = ""
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.content_type: str | None = None
        self.real_write: Callable[[bytes], Any] | None = None

    # -- the callables the app sees

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
        if exc_info is not None and self.head_sent:
            # Our head went to the server, but output may not have: only the server
            # knows, and it re-raises or takes the app's new (error) head as it is.
            self.plan = Plan.PASS
            self.real_write = self.downstream(status, headers, exc_info)
            return self.real_write
        self.status, self.headers = status, headers
        self.chunks, self.size = [], 0
        content_type = content_encoding = None
        for name, value in headers:
            lower = name.lower()
            if lower == "content-type":
                content_type = value
            elif lower == "content-encoding":
                content_encoding = value
        try:
            code = int(status[:3])
        except ValueError:
            code = 500
        self.content_type = content_type
        self.plan = self.core.plan(self.environ.get("REQUEST_METHOD", "GET"), self.path,
                                   code, content_type, content_encoding, self.state)
        if self.plan is Plan.PAGE:
            return self.write
        if self.plan is Plan.GOAL:
            outcome = self._outcome(None, is_page=False)
            write = self._send_head(outcome, None, exc_info)
            self._commit(outcome, rewritten=False)
            return write
        return self._send_head(NOTHING, None, exc_info)

    def write(self, data: bytes) -> None:
        if self.plan is Plan.PAGE and not self.head_sent:
            self.chunks.append(data)
            self.size += len(data)
            if self.size > self.core.buffer_limit:
                for chunk in self._give_up():
                    self.real_write(chunk)  # type: ignore[misc]
            return
        if self.real_write is None:
            raise AssertionError("write() called before start_response()")
        self.real_write(data)

    # -- iteration

    def iterate(self, result: Iterable[bytes]) -> Iterator[bytes]:
        try:
            for chunk in result:
                if self.plan is Plan.PAGE and not self.head_sent:
                    self.chunks.append(chunk)
                    self.size += len(chunk)
                    if self.size > self.core.buffer_limit:
                        yield from self._give_up()
                    continue
                yield chunk
            if self.plan is Plan.PAGE and not self.head_sent:
                body = b"".join(self.chunks)
                self.chunks = []
                outcome = self._outcome(body, is_page=True)
                new_body = outcome.body
                self._send_head(outcome, len(new_body) if new_body is not None else None)
                if self.edit_failed:
                    new_body = None
                yield body if new_body is None else new_body
                self._commit(outcome, rewritten=new_body is not None)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _give_up(self) -> Iterator[bytes]:
        """Over the buffer limit: send the head (cookies, no rewrite) and what we hold."""
        outcome = self._outcome(None, is_page=True)
        self._send_head(outcome, None)
        held, self.chunks = self.chunks, []
        self._commit(outcome, rewritten=False)
        yield from held

    # -- helpers

    edit_failed = False

    def _send_head(self, outcome: Outcome, body_length: int | None, exc_info: Any = None) -> Callable[[bytes], Any]:
        headers = self.headers
        if outcome is not NOTHING:
            try:
                headers = edit_headers(list(self.headers), outcome, body_length)
            except Exception:
                log.exception("personalize_mw: header edit failed; original response served")
                self.edit_failed = True
        self.head_sent = True
        self.real_write = self.downstream(self.status, headers, exc_info) if exc_info else \
            self.downstream(self.status, headers)
        return self.real_write

    def _outcome(self, body: bytes | None, is_page: bool) -> Outcome:
        state = self.state
        return self.core.visit_safely(state.context, body, is_page, state, self.content_type)

    def _commit(self, outcome: Outcome, rewritten: bool) -> None:
        if not self.edit_failed:  # the head went out unchanged: nothing of ours was sent
            self.core.commit(outcome, rewritten)
