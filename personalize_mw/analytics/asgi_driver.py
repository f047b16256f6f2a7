"""Requests to an ASGI app from this process: no server, no socket, no thread.

The site simulation's browser (:mod:`.simulate_site`). Starlette's TestClient
runs the app on a second thread and crosses over for every ASGI message;
httpx's ASGITransport stays on one loop but builds, merges and cookie-jars each
request through httpx. On the 1,000-visitor simulation those layers took most of
the time (docs/lift.md). Here a request is one ``run_until_complete`` of the app
on a loop the driver owns; the lifespan runs as under a server (startup before
the first request, shutdown, which flushes the middleware's sinks, on close);
the cookies are one browser's, for one origin.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from http.cookies import SimpleCookie
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]  # lower-case names, in the order the app sent them
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


class ASGIDriver:
    """``with ASGIDriver(app) as browser: browser.request("GET", "/pricing")``."""

    def __init__(self, app: ASGIApp, origin: str = "http://testserver") -> None:
        url = urlsplit(origin)
        self.app = app
        self.scheme = url.scheme
        self.host = url.netloc
        self.server = (url.hostname or "localhost", url.port or (443 if url.scheme == "https" else 80))
        self.cookies: dict[str, str] = {}  # name -> value; every cookie of the origin is Path=/ here
        self._state: dict[str, Any] = {}  # the lifespan's state, copied into each request (as uvicorn does)
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> Self:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._lifespan_start())
        except BaseException:
            self._loop.close()
            self._loop = None
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._loop is not None
        try:
            self._loop.run_until_complete(self._lifespan_step("shutdown"))
        finally:
            self._loop.close()
            self._loop = None

    def request(self, method: str, target: str, headers: Sequence[tuple[str, str]] = (),
                body: bytes = b"") -> Response:
        """One request for ``target`` (path and query) with this browser's cookies; Set-Cookie is kept."""
        if self._loop is None:
            raise RuntimeError("ASGIDriver.request outside its with block")
        response = self._loop.run_until_complete(self._call(method, target, headers, body))
        for name, value in response.headers:
            if name == "set-cookie":
                self._keep(value)
        return response

    def _keep(self, set_cookie: str) -> None:
        for name, morsel in SimpleCookie(set_cookie).items():
            max_age = morsel["max-age"]
            if max_age and int(max_age) <= 0:  # how a server deletes a cookie
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value

    async def _call(self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes) -> Response:
        path, _, query = target.partition("?")
        raw = [(b"host", self.host.encode("latin-1"))]
        raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        if self.cookies:
            raw.append((b"cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()).encode("latin-1")))
        if body or method not in ("GET", "HEAD"):
            raw.append((b"content-length", str(len(body)).encode("latin-1")))
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
                 "method": method, "scheme": self.scheme, "path": unquote(path), "raw_path": path.encode("latin-1"),
                 "query_string": query.encode("latin-1"), "root_path": "", "headers": raw,
                 "client": ("192.0.2.1", 50000), "server": self.server, "state": dict(self._state)}
        status, sent, chunks = 0, False, []
        headers_out: list[tuple[str, str]] = []
        done = asyncio.Event()

        async def receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()  # the browser stays until the whole response has come
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, headers_out
            if message["type"] == "http.response.start":
                status = message["status"]
                headers_out = [(n.decode("latin-1").lower(), v.decode("latin-1")) for n, v in message["headers"]]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done.set()

        await self.app(scope, receive, send)
        return Response(status, headers_out, b"".join(chunks))

    async def _lifespan_start(self) -> None:
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self._state}
        self._lifespan = asyncio.ensure_future(self.app(scope, self._to_app.get, self._from_app.put))
        await self._lifespan_step("startup")

    async def _lifespan_step(self, phase: str) -> None:
        await self._to_app.put({"type": f"lifespan.{phase}"})
        answer = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait({answer, self._lifespan}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():  # the app returned or raised instead of answering
            answer.cancel()
            self._lifespan.result()
            raise RuntimeError(f"the app ended its lifespan without answering lifespan.{phase}")
        message = answer.result()
        if message["type"] != f"lifespan.{phase}.complete":
            raise RuntimeError(f"lifespan.{phase} failed: {message.get('message', '')}") from await self._ended()
        if phase == "shutdown":
            await self._lifespan

    async def _ended(self) -> BaseException | None:
        """The lifespan task's error once it has ended, cancelled if it does not end by itself.

        Read here, not left to the task's garbage collection, where asyncio would
        log it as never retrieved at whatever moment the collector runs.
        """
        await asyncio.sleep(0)  # an app that answered "failed" raises or returns next
        if not self._lifespan.done():
            self._lifespan.cancel()
            await asyncio.wait({self._lifespan})
        return None if self._lifespan.cancelled() else self._lifespan.exception()
