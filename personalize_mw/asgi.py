"""The ASGI adapter: a pure ASGI middleware (not BaseHTTPMiddleware).

    app.add_middleware(PersonalizeMiddleware, config="personalize.yaml")
    app = PersonalizeMiddleware(app, config="personalize.yaml")

Only ``200 text/html`` responses are buffered, up to ``buffer_limit``; every
other message is forwarded as it comes. Nothing is sent until we know the
final headers, so an internal failure can still send the original response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Generator, Iterable, MutableMapping
from typing import Any

from .config import ConfigSource, load_config
from .core import compiled
from .core.consent_endpoint import EndpointResponse
from .core.context import RequestContext
from .core.endpoints import Endpoint, endpoint_table
from .core.personalizer import NOTHING, Personalizer, Plan
from .core.request_state import STATE_KEY, RequestState
from .core.response import ResponseFlow, Step

log = logging.getLogger("personalize_mw")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _request_headers_py(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The scope's headers as {lower-case name: value}: the first value of a name wins."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        if name not in headers:
            headers[name] = raw_value.decode("latin-1")
        elif name == "cookie":  # HTTP/2 may split cookies over several headers (RFC 9113 8.2.3)
            headers[name] += "; " + raw_value.decode("latin-1")
    return headers


def _request_headers_compiled(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The same in one C call (some 1.5 µs less a request); the Python path where C declines."""
    headers = _compiled_headers(raw)
    return headers if headers is not None else _request_headers_py(raw)


if compiled.scan is not None:
    _compiled_headers = compiled.scan.request_headers
    request_headers = _request_headers_compiled
else:
    request_headers = _request_headers_py


def request_context(scope: Scope, country_header: str) -> RequestContext:
    headers = request_headers(scope.get("headers") or ())
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    query = scope.get("query_string") or b""
    client = scope.get("client")
    return RequestContext(scope.get("method", "GET"), scope.get("scheme", "http"), host,
                          scope.get("path", "/"), query.decode("latin-1"), headers, country_header,
                          client[0] if client else None)


def peek(scope: Scope) -> tuple[str | None, str]:
    """The Cookie header (joined, as request_context joins it) and the query string, nothing else decoded."""
    cookie: str | None = None
    for raw_name, raw_value in scope.get("headers") or ():
        if len(raw_name) == 6 and raw_name.lower() == b"cookie":
            value = raw_value.decode("latin-1")
            cookie = value if cookie is None else cookie + "; " + value
    return cookie, (scope.get("query_string") or b"").decode("latin-1")


class PersonalizeMiddleware:
    def __init__(self, app: ASGIApp, config: ConfigSource = "personalize.yaml",
                 *, personalizer: Personalizer | None = None) -> None:
        self.app = app
        self.core = personalizer or Personalizer(load_config(config))
        self.endpoints = endpoint_table(self.core)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" or not self.core.enabled:
            if kind == "lifespan":
                return await self.app(scope, receive, self._lifespan_send(send))
            if kind == "http":
                scope[STATE_KEY] = None  # identify()/track() know the middleware is there, switched off
            return await self.app(scope, receive, send)
        path = scope["path"]
        endpoint = self.endpoints.get(path)
        if endpoint is not None:
            return await self._endpoint(endpoint, scope, receive, send)
        state = scope[STATE_KEY] = RequestState.of_request(self.core, scope, request_context, peek)
        await self.app(scope, receive, _Exchange(self.core, state, scope.get("method", "GET"), path, send).send)

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                # Flush in a thread: the sink may block, the event loop must not.
                await asyncio.to_thread(self.core.queue.close)
            await send(message)
        return lifespan_send

    async def _endpoint(self, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, endpoint.max_body) if endpoint.max_body else b""
        if body is None:
            return
        ctx = request_context(scope, self.core.country_header)
        response = (await asyncio.to_thread(endpoint.handle, ctx, body) if endpoint.blocking
                    else endpoint.handle(ctx, body))
        await _respond(send, response)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, cut just past ``limit`` (enough to answer 413); None if the client left."""
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > limit:
            break
    return bytes(body)


async def _respond(send: Send, response: EndpointResponse) -> None:
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in response.header_list()]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def _with_head(start: Message, flow: ResponseFlow) -> Message:
    """The start message with the flow's final headers (the original message if nothing changed)."""
    if flow.outcome is NOTHING:  # what head() would say, without decoding the headers for it
        return start
    raw = start.get("headers") or ()
    headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw]
    edited = flow.head(headers)
    if edited is headers:
        return start
    return {**start, "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in edited]}


class _Held:
    """An awaitable with nothing to wait for, where no asyncio loop runs (trio, say)."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return iter(())  # type: ignore[return-value]  # exhausted at once: the await returns None


_HELD: Awaitable[None] | None = None  # what ``send`` gives back for a message it holds


def _held() -> Awaitable[None]:
    """A finished future, made once: awaiting one returns at once and never reaches its loop,
    so it serves every request (under half of what awaiting a coroutine of ours costs)."""
    global _HELD
    try:
        done = asyncio.get_running_loop().create_future()
    except RuntimeError:  # no asyncio loop: a plain awaitable (as dear as a coroutine)
        _HELD = _Held()
        return _HELD
    done.set_result(None)
    _HELD = done
    return done


class _Exchange:
    """The ``send`` that translates one response's messages to the response flow and back.

    ``send`` is a plain function returning an awaitable: once the head is decided
    and nothing is held, each message goes to the server's send as it is, with no
    coroutine of ours around it; and a response that passes makes no flow at all.
    Nothing in the scope leads here: the server's send is bound to what holds the
    scope (uvicorn's RequestResponseCycle), so a scope reaching this object would
    put every request on a cycle that only the garbage collector frees (20–40 µs a
    page under uvicorn, docs/performance.md).
    """

    __slots__ = ("core", "state", "method", "path", "downstream", "flow", "start", "forwarding")

    def __init__(self, core: Personalizer, state: RequestState, method: str, path: str, downstream: Send) -> None:
        self.core, self.state, self.method, self.path, self.downstream = core, state, method, path, downstream
        self.flow: ResponseFlow | None = None  # made when the head is not one that passes
        self.start: Message | None = None  # the head held while the page is
        self.forwarding = False  # the head went out and nothing is held: the rest goes as it comes

    def send(self, message: Message) -> Awaitable[None]:
        if self.forwarding:
            return self.downstream(message)
        if message["type"] == "http.response.start":
            content_type = content_encoding = None
            for name, value in message.get("headers") or ():
                size = len(name)  # the length first: most names are neither, and lower() makes a copy
                if size == 12:
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
                elif size == 16 and name.lower() == b"content-encoding":
                    content_encoding = value.decode("latin-1")
            plan = self.core.plan(self.method, self.path, message["status"], content_type, content_encoding,
                                  self.state)
            if plan is Plan.PASS:
                self.forwarding = True
                return self.downstream(message)
            made = self.flow = ResponseFlow(self.core, self.state, self.method, self.path)
            if made.begin(plan, content_type) is Step.BUFFER:
                self.start = message
                return _HELD if _HELD is not None else _held()
            return self._send_head(message, made)  # SEND: headers only
        flow = self.flow
        if self.start is None or flow is None:  # nothing held
            return self.downstream(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            chunk = message.get("body", b"")
            flow.finish(chunk)  # the page's last message: no coroutine of ours around the decision
            if flow.outcome is NOTHING and flow.body is chunk:  # the page was this one message, left as it came
                return self._as_they_came(flow, message)
            return self._release(flow, None, more=False)
        return self._buffered(message, flow)

    async def _as_they_came(self, flow: ResponseFlow, message: Message) -> None:
        """The held head and the page's one message, both the app's own: forwarded as they are."""
        start, self.start = self.start, None
        assert start is not None
        self.forwarding = True
        await self.downstream(start)
        await self.downstream(message)
        flow.sent()

    async def _send_head(self, start: Message, flow: ResponseFlow) -> None:
        self.forwarding = True
        await self.downstream(_with_head(start, flow))
        flow.sent()

    async def _buffered(self, message: Message, flow: ResponseFlow) -> None:
        if message["type"] != "http.response.body":  # pathsend, trailers: stop buffering, forward as is
            flow.stream()
            await self._release(flow, flow.held(), more=True)
            return await self.downstream(message)
        # a body with more to come: the last one is decided in send()
        if not flow.feed(message.get("body", b"")):
            await self._release(flow, flow.held(), more=True)

    async def _release(self, flow: ResponseFlow, held: bytes | None, more: bool) -> None:
        """Send the held head with the flow's headers, then the body (``held``, or the finished page)."""
        start, self.start = self.start, None
        assert start is not None
        self.forwarding = True  # what comes after streams through
        await self.downstream(_with_head(start, flow))
        body = flow.body if held is None else held  # read after head(): a failed edit restores it
        if body or not more:
            await self.downstream({"type": "http.response.body", "body": body, "more_body": more})
        flow.sent()
