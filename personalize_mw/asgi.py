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
from typing import Any, Awaitable, Callable, MutableMapping

from .config import Config, load_config
from .core.consent_endpoint import MAX_BODY, EndpointResponse, handle_consent
from .core.event_endpoint import EventEndpoint
from .core.context import RequestContext
from .core.headers import edit_headers
from .core.personalizer import NOTHING, Outcome, Personalizer, Plan
from .core.request_state import STATE_KEY, RequestState
from .core.stats_endpoint import handle_stats

log = logging.getLogger("personalize_mw")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_context(scope: Scope, country_header: str) -> RequestContext:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1").lower()
        if name not in headers:
            headers[name] = raw_value.decode("latin-1")
        elif name == "cookie":  # HTTP/2 may split cookies over several headers (RFC 9113 8.2.3)
            headers[name] += "; " + raw_value.decode("latin-1")
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server else "localhost"
    query = scope.get("query_string") or b""
    client = scope.get("client")
    return RequestContext(scope.get("method", "GET"), scope.get("scheme", "http"), host,
                          scope.get("path", "/"), query.decode("latin-1"), headers, country_header,
                          client[0] if client else None)


class PersonalizeMiddleware:
    def __init__(self, app: ASGIApp, config: "str | dict[str, Any] | Config" = "personalize.yaml",
                 *, personalizer: Personalizer | None = None) -> None:
        self.app = app
        self.core = personalizer or Personalizer(load_config(config))
        self.events = EventEndpoint(self.core)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" or not self.core.enabled:
            if kind == "lifespan":
                return await self.app(scope, receive, self._lifespan_send(send))
            if kind == "http":
                scope[STATE_KEY] = None  # identify()/track() know the middleware is there, switched off
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == self.core.consent_path:
            return await self._consent(scope, receive, send)
        if path == self.events.path:
            return await self._event(scope, receive, send)
        if path == self.core.stats_path:
            return await _respond(send, handle_stats(self.core, scope.get("method", "GET")))
        state = scope[STATE_KEY] = RequestState(self.core, scope, request_context)
        responder = _Responder(self.core, scope, send, state)
        await self.app(scope, receive, responder.send)

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                # Flush in a thread: the sink may block, the event loop must not.
                await asyncio.to_thread(self.core.queue.close)
            await send(message)
        return lifespan_send

    async def _consent(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, MAX_BODY)
        if body is None:
            return
        ctx = request_context(scope, self.core.country_header)
        await _respond(send, handle_consent(self.core, ctx, body))

    async def _event(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, self.events.max_body)
        if body is None:
            return
        await _respond(send, self.events.handle(request_context(scope, self.core.country_header), body))


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


class _Responder:
    """Wraps ``send`` for one request: decides at the response start, then buffers or forwards."""

    __slots__ = ("core", "scope", "state", "downstream", "plan", "start", "chunks", "size", "content_type")

    def __init__(self, core: Personalizer, scope: Scope, send: Send, state: RequestState) -> None:
        self.core = core
        self.scope = scope
        self.state = state
        self.downstream = send
        self.plan = Plan.PASS
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.content_type: str | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.plan = self._plan(message)
            if self.plan is Plan.PAGE:
                self.start = message
                return
            if self.plan is Plan.GOAL:
                return await self._send_goal(message)
            return await self.downstream(message)
        if self.plan is not Plan.PAGE or self.start is None:
            return await self.downstream(message)
        if kind != "http.response.body":  # pathsend, trailers: stop buffering, forward as is
            await self._give_up()
            return await self.downstream(message)
        chunk = message.get("body", b"")
        if chunk:
            self.chunks.append(chunk)
            self.size += len(chunk)
        if message.get("more_body", False):
            if self.size > self.core.buffer_limit:
                await self._give_up()
            return
        await self._send_page()

    def _plan(self, message: Message) -> Plan:
        content_type = content_encoding = None
        for name, value in message.get("headers") or ():
            lower = name.lower()
            if lower == b"content-type":
                content_type = value.decode("latin-1")
            elif lower == b"content-encoding":
                content_encoding = value.decode("latin-1")
        self.content_type = content_type
        return self.core.plan(self.scope.get("method", "GET"), self.scope["path"], message["status"],
                              content_type, content_encoding, self.state)

    def _outcome(self, body: bytes | None, is_page: bool) -> Outcome:
        state = self.state
        return self.core.visit_safely(state.context, body, is_page, state, self.content_type)

    @staticmethod
    def _apply(start: Message, outcome: Outcome, body_length: int | None) -> Message:
        if outcome is NOTHING:
            return start
        try:
            headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in start.get("headers") or ()]
            edited = edit_headers(headers, outcome, body_length)
            return {**start, "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in edited]}
        except Exception:
            log.exception("personalize_mw: header edit failed; original response served")
            return start

    async def _send_page(self) -> None:
        body = b"".join(self.chunks)
        original = self.start
        # Done buffering: trailers that follow the body are forwarded as they are.
        self.start, self.chunks = None, []
        outcome = self._outcome(body, is_page=True)
        new_body = outcome.body
        start = self._apply(original, outcome, len(new_body) if new_body is not None else None)
        if start is original:
            new_body = None  # header edit failed: the original body goes with the original headers
        await self.downstream(start)
        await self.downstream({"type": "http.response.body", "body": body if new_body is None else new_body})
        if start is not original:  # our head went out: record what it carried
            self.core.commit(outcome, rewritten=new_body is not None)

    async def _give_up(self) -> None:
        """Too large (or not a plain body): send what we hold unchanged and stream the rest."""
        outcome = self._outcome(None, is_page=True)
        original = self.start
        start = self._apply(original, outcome, None)
        self.start = None
        await self.downstream(start)
        if self.chunks:
            await self.downstream({"type": "http.response.body", "body": b"".join(self.chunks), "more_body": True})
            self.chunks = []
        if start is not original:
            self.core.commit(outcome, rewritten=False)

    async def _send_goal(self, message: Message) -> None:
        outcome = self._outcome(None, is_page=False)
        start = self._apply(message, outcome, None)
        await self.downstream(start)
        if start is not message:
            self.core.commit(outcome, rewritten=False)

