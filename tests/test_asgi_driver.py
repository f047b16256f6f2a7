"""The simulation's in-process browser against a real Starlette app: lifespan, cookies, bodies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from personalize_mw.analytics.asgi_driver import ASGIDriver


def make_app(events: list[str], fail_startup: bool = False) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if fail_startup:
            raise RuntimeError("no database")
        events.append("startup")
        yield
        events.append("shutdown")

    async def echo(request: Request) -> Response:
        events.append(request.url.path)
        return JSONResponse({"path": request.url.path, "query": request.url.query, "cookies": request.cookies,
                             "body": (await request.body()).decode(), "host": request.headers["host"],
                             "agent": request.headers.get("user-agent")})

    async def login(request: Request) -> Response:
        response = Response("in")
        response.set_cookie("who", "ada", max_age=3600)
        response.set_cookie("theme", "dark")
        return response

    async def logout(request: Request) -> Response:
        response = Response("out")
        response.delete_cookie("who")
        return response

    return Starlette(routes=[Route("/login", login), Route("/logout", logout),
                             Route("/{rest:path}", echo, methods=["GET", "POST"])], lifespan=lifespan)


def test_lifespan_runs_around_the_requests() -> None:
    events: list[str] = []
    with ASGIDriver(make_app(events), "http://shop.example") as browser:
        assert events == ["startup"]
        answer = browser.request("POST", "/caf%C3%A9?x=1", [("User-Agent", "sim")], b"hello").text
        assert events == ["startup", "/café"]
    assert events == ["startup", "/café", "shutdown"]
    assert '"query":"x=1"' in answer and '"body":"hello"' in answer
    assert '"host":"shop.example"' in answer and '"agent":"sim"' in answer


def test_cookies_are_kept_sent_and_deleted() -> None:
    with ASGIDriver(make_app([])) as browser:
        assert browser.request("GET", "/login").status == 200
        assert browser.cookies == {"who": "ada", "theme": "dark"}
        assert '"cookies":{"who":"ada","theme":"dark"}' in browser.request("GET", "/page").text
        browser.request("GET", "/logout")  # Max-Age=0
        assert browser.cookies == {"theme": "dark"}
        browser.cookies.clear()  # a new browser
        assert '"cookies":{}' in browser.request("GET", "/page").text


def test_a_failed_startup_is_raised_and_requests_need_the_with_block() -> None:
    failing = ASGIDriver(make_app([], fail_startup=True))
    with pytest.raises(RuntimeError, match="(?s)lifespan.startup failed: .*no database") as failed:
        failing.__enter__()
    assert str(failed.value.__cause__) == "no database"  # the app's own error, read from its lifespan task
    browser = ASGIDriver(make_app([]))
    with pytest.raises(RuntimeError, match="outside its with block"):
        browser.request("GET", "/")
