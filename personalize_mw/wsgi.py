"""The WSGI adapter, native (no ASGI bridge).

    app.wsgi_app = PersonalizeWSGIMiddleware(app.wsgi_app, config="personalize.yaml")

Honours the whole WSGI contract: ``start_response`` may be called late (from
inside a generator), more than once with ``exc_info``; apps may use the
``write()`` callable; ``close()`` is always called on the app's iterable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any

from .config import ConfigSource, load_config
from .core.context import RequestContext
from .core.endpoints import Endpoint, endpoint_table
from .core.personalizer import Personalizer, Plan
from .core.request_state import STATE_KEY, RequestState
from .core.response import ResponseFlow, Step

log = logging.getLogger("personalize_mw")

StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class EnvironHeaders(Mapping[str, str]):
    """The HTTP_* keys of a WSGI environ (or Django's META) as lower-case header names, read when asked.

    A request reads a handful of headers; turning every key of the environ into
    a header name up front cost more than the rest of a page without markers.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def get(self, name: str, default: Any = None) -> Any:  # the hot call: no exception on a miss
        key = _KEYS.get(name)
        if key is None:
            key = _key(name)
        value = self._environ.get(key)
        return value if type(value) is str and (value or key != "CONTENT_TYPE") else default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        for key, value in list(self._environ.items()):
            if type(value) is str and (key.startswith("HTTP_") or (key == "CONTENT_TYPE" and value)):
                yield "content-type" if key == "CONTENT_TYPE" else key[5:].replace("_", "-").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self)


_KEYS: dict[str, str] = {}  # header name -> environ key; the names are the code's and the config's


def _key(name: str) -> str:
    lower = name.lower()
    key = "CONTENT_TYPE" if lower == "content-type" else "HTTP_" + lower.upper().replace("-", "_")
    if name == lower and len(_KEYS) < 256:
        _KEYS[name] = key
    return key


def headers_from_environ(environ: Mapping[str, Any]) -> EnvironHeaders:
    """CGI-style HTTP_* keys (WSGI environ, Django's META) -> lower-case header names."""
    return EnvironHeaders(environ)


def request_context(environ: dict[str, Any], country_header: str) -> RequestContext:
    headers = headers_from_environ(environ)
    host = headers.get("host") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    return RequestContext(environ.get("REQUEST_METHOD", "GET"), environ.get("wsgi.url_scheme", "http"), host,
                          full_path(environ), environ.get("QUERY_STRING", ""), headers, country_header,
                          environ.get("REMOTE_ADDR"))


def full_path(environ: dict[str, Any]) -> str:
    # PEP 3333 strings are latin-1 decoded bytes; the URL path itself is UTF-8.
    raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    if raw.isascii():  # the same either way: skip the two copies
        return raw or "/"
    try:
        return raw.encode("latin-1").decode("utf-8") or "/"
    except UnicodeError:
        return raw or "/"


def peek(environ: dict[str, Any]) -> tuple[str | None, str]:
    """The Cookie header and the query string, as request_context reads them (Django's META too)."""
    return environ.get("HTTP_COOKIE"), environ.get("QUERY_STRING", "")


class PersonalizeWSGIMiddleware:
    def __init__(self, app: WSGIApp, config: ConfigSource = "personalize.yaml",
                 *, personalizer: Personalizer | None = None) -> None:
        self.app = app
        self.core = personalizer or Personalizer(load_config(config))
        self.endpoints = endpoint_table(self.core)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.core.enabled:
            environ[STATE_KEY] = None  # identify()/track() know the middleware is there, switched off
            return self.app(environ, start_response)
        path = full_path(environ)
        endpoint = self.endpoints.get(path)
        if endpoint is not None:
            return self._endpoint(endpoint, environ, start_response)
        state = environ[STATE_KEY] = RequestState.of_request(self.core, environ, request_context, peek)
        response = _Response(self.core, state, environ.get("REQUEST_METHOD", "GET"), path, start_response)
        result = self.app(environ, response.start_response)
        if response.head_sent and not response.buffering:
            return result  # decided already: hand the app's iterable over untouched
        return _Body(response.iterate(result), result)

    def _endpoint(self, endpoint: Endpoint, environ: dict[str, Any],
                  start_response: StartResponse) -> Iterable[bytes]:
        body = _read_body(environ, endpoint.max_body) if endpoint.max_body else b""
        response = endpoint.handle(request_context(environ, self.core.country_header), body)
        start_response(response.status_line(), response.header_list())
        return [response.body]


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the body: enough to know it is too large."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(min(max(length, 0), limit + 1)) if length else b""


class _Body:
    """Our body iterator; close() reaches the app's iterable even if the server never iterated."""

    __slots__ = ("_chunks", "_result")

    def __init__(self, chunks: Generator[bytes, None, None], result: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        chunks: Any = self._chunks  # a generator (typeshed's Generator lacks gi_*): what
        # inspect.getgeneratorstate(chunks) != GEN_CREATED says, without the call
        started = chunks.gi_running or chunks.gi_suspended or chunks.gi_frame is None
        chunks.close()  # a started generator closes the app's iterable in its finally
        close = getattr(self._result, "close", None)
        if not started and close is not None:
            close()


class _Response:
    """The start_response, write() and iterable that translate one response to the flow.

    Nothing in the environ leads here: the server's start_response may be bound to
    what holds the environ (werkzeug's request handler, waitress's task), so an
    environ reaching this object would put every request on a cycle that only the
    garbage collector frees (see asgi._Exchange).
    """

    __slots__ = ("core", "state", "method", "path", "_flow", "downstream", "buffering", "head_sent", "status",
                 "headers", "real_write")

    def __init__(self, core: Personalizer, state: RequestState, method: str, path: str,
                 downstream: StartResponse) -> None:
        self.core, self.state, self.method, self.path, self.downstream = core, state, method, path, downstream
        self._flow: ResponseFlow | None = None  # made when a head is not one that passes
        self.real_write: Callable[[bytes], Any] | None = None
        self.buffering = False  # a page is being held
        self.head_sent = False
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    # -- the callables the app sees

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], Any]:
        if exc_info is not None and self.head_sent:
            # Our head went to the server, but output may not have: only the server
            # knows, and it re-raises or takes the app's new (error) head as it is.
            self.buffering = False
            self.real_write = self.downstream(status, headers, exc_info)
            return self.real_write
        self.status, self.headers = status, headers
        content_type = content_encoding = None
        for name, value in headers:
            size = len(name)  # the length first: most names are neither, and lower() makes a copy
            if size == 12:
                if name.lower() == "content-type":
                    content_type = value
            elif size == 16 and name.lower() == "content-encoding":
                content_encoding = value
        try:
            code = int(status[:3])
        except ValueError:
            code = 500
        plan = self.core.plan(self.method, self.path, code, content_type, content_encoding, self.state)
        flow = self._flow
        if flow is None:
            if plan is Plan.PASS:  # nothing to hold, edit or record: no flow
                self.buffering = False
                return self._send_head(exc_info)
            flow = self._flow = ResponseFlow(self.core, self.state, self.method, self.path)
        step = flow.begin(plan, content_type)
        self.buffering = step is Step.BUFFER
        if self.buffering:
            return self.write
        write = self._send_head(exc_info)
        if step is Step.SEND:
            flow.sent()
        return write

    def _held(self) -> ResponseFlow:
        """The flow of a response being held (a head that does not pass made it; start_response may
        have come during the iteration)."""
        flow = self._flow
        assert flow is not None
        return flow

    def write(self, data: bytes) -> None:
        if self.buffering:
            if not self._held().feed(data):
                for chunk in self._give_up():  # sends the head: no longer buffering
                    self.write(chunk)
            return
        if self.real_write is None:
            raise AssertionError("write() called before start_response()")
        self.real_write(data)

    # -- iteration

    def iterate(self, result: Iterable[bytes]) -> Generator[bytes, None, None]:
        try:
            for chunk in result:
                if self.buffering:
                    flow = self._flow  # read here: start_response may come during the iteration
                    assert flow is not None  # buffering: a head made one
                    if not flow.feed(chunk):
                        yield from self._give_up()
                    continue
                yield chunk
            if self.buffering:
                self.buffering = False
                flow = self._held()
                flow.finish()
                self._send_head()
                yield flow.body  # read after head(): a failed edit restores the app's body
                flow.sent()
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    def _give_up(self) -> Iterator[bytes]:
        """Over the buffer limit: send the head (cookies, no rewrite) and what we hold."""
        self.buffering = False
        self._send_head()
        flow = self._held()
        held = flow.held()
        flow.sent()
        if held:
            yield held

    def _send_head(self, exc_info: Any = None) -> Callable[[bytes], Any]:
        flow = self._flow
        headers = self.headers if flow is None else flow.head(self.headers)  # head(): the app's own if unchanged
        self.head_sent = True
        self.real_write = self.downstream(self.status, headers, exc_info) if exc_info else \
            self.downstream(self.status, headers)
        return self.real_write
