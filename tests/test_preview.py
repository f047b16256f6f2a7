"""Preview links and the X-Personalize-Debug header, through the ASGI middleware and the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from conftest import ADAPTER_CONSENT, CORE_SECRET
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from personalize_mw import PersonalizeMiddleware
from personalize_mw.cli import main
from personalize_mw.core.preview import PARAM, PreviewCodec

PAGE = ("<h1>Hi</h1><!-- personalize:hero --><p>default hero</p><!-- /personalize:hero -->"
        "<!-- personalize:cta --><p>default cta</p><!-- /personalize:cta -->")


def config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "secret_keys": [CORE_SECRET], "sink": f"jsonl:{tmp_path / 'tp.jsonl'}",
        "delivery": {"flush_interval_s": 0.05},
        "segments": {"paid": {"utm_medium": "cpc"}},
        "slots": {
            "hero": {"rules": [{"if": "paid", "variant": "ads", "id": "paid-hero", "template": "<p>ADS</p>"},
                               {"if": {"path": "/"}, "variant": "home", "id": "home-hero", "template": "<p>HOME</p>"},
                               {"if": {"path": "/never"}, "variant": "pricing", "template": "<p>PRICING</p>"}]},
            "cta": {"variants": [{"variant": "a", "template": "<p>A</p>"}, {"variant": "b", "template": "<p>B</p>"}],
                    "holdout": 0.2},
        },
        **overrides,
    }


def client(tmp_path: Path, **overrides: Any) -> tuple[TestClient, PersonalizeMiddleware]:
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    app = PersonalizeMiddleware(Starlette(routes=[Route("/", page)]), config=config(tmp_path, **overrides))
    test_client = TestClient(app, base_url="http://testserver")
    test_client.cookies.set("pmw_consent", ADAPTER_CONSENT.split("=", 1)[1])
    return test_client, app


def records(app: PersonalizeMiddleware, tmp_path: Path) -> list[dict[str, Any]]:
    app.core.queue.close()
    sink = tmp_path / "tp.jsonl"
    return [json.loads(line) for line in sink.read_text().splitlines()] if sink.exists() else []


def cli_link(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    path = tmp_path / "personalize.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path)))
    assert main(["preview-link", "--config", str(path), *args]) == 0
    return capsys.readouterr().out.strip()


def test_a_preview_link_forces_the_variant_in_that_browser_and_records_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = cli_link(tmp_path, capsys, "--slot", "hero", "--variant", "pricing", "--base-url", "https://shop.example/?a=1")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "shop.example", "/")
    token = parse_qs(parts.query)[PARAM][0]
    assert parse_qs(parts.query)["a"] == ["1"]

    test_client, app = client(tmp_path)
    first = test_client.get(f"/?{PARAM}={token}")
    assert "<p>PRICING</p>" in first.text  # forced, though its rule would never fire on /
    assert "pmw_preview" in first.headers["set-cookie"]
    assert "hero: preview => pricing" in first.headers["x-personalize-debug"]
    again = test_client.get("/")  # the cookie keeps the preview on the next pages
    assert "<p>PRICING</p>" in again.text and "x-personalize-debug" in again.headers
    assert "cache-control" in again.headers and "private" in again.headers["cache-control"]
    assert records(app, tmp_path) == []  # no pageview, no exposure


def test_a_segment_preview_shows_what_that_segment_sees(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token = parse_qs(urlsplit(cli_link(tmp_path, capsys, "--segment", "paid")).query)[PARAM][0]
    test_client, app = client(tmp_path)
    assert "<p>ADS</p>" in test_client.get(f"/?{PARAM}={token}").text
    app.core.queue.close()


@pytest.mark.parametrize("args, message", [
    (["--variant", "pricing"], "--variant needs --slot"),
    (["--slot", "nope", "--variant", "x"], "no slot 'nope'"),
    (["--slot", "hero", "--variant", "nope"], "is not shown by slot hero"),
])
def test_the_cli_refuses_links_that_would_show_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      args: list[str], message: str) -> None:
    path = tmp_path / "personalize.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path)))
    assert main(["preview-link", "--config", str(path), *args]) != 0
    assert message in capsys.readouterr().err


def test_expired_and_tampered_tokens_are_ignored(tmp_path: Path) -> None:
    codec = PreviewCodec([CORE_SECRET])
    expired = codec.make("hero", "pricing", None, 60, now=time.time() - 120)
    good = codec.make("hero", "pricing", None, 60)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    other_key = PreviewCodec(["another-secret-0123456789"]).make("hero", "pricing", None, 60)
    test_client, app = client(tmp_path)
    for token in (expired, tampered, other_key, "garbage", good.replace(".", "")):
        response = test_client.get(f"/?{PARAM}={token}")
        assert "<p>HOME</p>" in response.text and "PRICING" not in response.text
        assert "x-personalize-debug" not in response.headers
        assert "pmw_preview=" not in response.headers.get("set-cookie", "")
    test_client.cookies.set("pmw_preview", expired)
    response = test_client.get("/")
    # Ignored, not answered: the browser drops the cookie itself when its Max-Age ends.
    assert "<p>HOME</p>" in response.text and "pmw_preview" not in response.headers.get("set-cookie", "")
    assert any(r["type"] == "pageview" for r in records(app, tmp_path))  # normal visits are recorded


def test_a_visitor_cookie_is_not_a_preview_token(tmp_path: Path) -> None:
    test_client, app = client(tmp_path)
    test_client.get("/")
    visitor_cookie = test_client.cookies.get("pmw_id")
    assert visitor_cookie and PreviewCodec([CORE_SECRET]).load(visitor_cookie, time.time()) is None
    app.core.queue.close()


def test_the_debug_header_lists_rules_tried_only_when_debug_is_on(tmp_path: Path) -> None:
    test_client, app = client(tmp_path)
    assert "x-personalize-debug" not in test_client.get("/").headers
    app.core.queue.close()
    test_client, app = client(tmp_path, debug=True)
    header = test_client.get("/").headers["x-personalize-debug"]
    hero, cta = header.split("; ")
    assert hero == "hero: rules:paid-hero- rules:home-hero+ => home (home-hero, treatment)"
    assert cta.startswith("cta: split:cta.") and ("(holdout, would be" in cta or "treatment)" in cta)
    paid = test_client.get("/?utm_medium=cpc").headers["x-personalize-debug"]
    assert paid.startswith("hero: rules:paid-hero+ => ads (paid-hero, treatment)")
    # three pages (one before debug), two slots each: debugging still records
    assert [r["type"] for r in records(app, tmp_path)].count("exposure") == 6


def test_wsgi_sends_the_debug_header_and_honours_a_preview(tmp_path: Path) -> None:
    from personalize_mw.wsgi import PersonalizeWSGIMiddleware

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [PAGE.encode()]

    middleware = PersonalizeWSGIMiddleware(app, config=config(tmp_path))
    token = PreviewCodec([CORE_SECRET]).make("hero", "pricing", None, 60)

    def get(query: str) -> tuple[dict[str, str], bytes]:
        got: dict[str, str] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            got.update((k.lower(), v) for k, v in headers)

        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": query, "SERVER_NAME": "testserver",
                   "SERVER_PORT": "80", "wsgi.url_scheme": "http", "HTTP_HOST": "testserver",
                   "HTTP_COOKIE": ADAPTER_CONSENT, "wsgi.input": None}
        body = b"".join(middleware(environ, start_response))
        return got, body

    headers, body = get(f"{PARAM}={token}")
    assert b"<p>PRICING</p>" in body and headers["x-personalize-debug"].startswith("hero: preview => pricing")
    headers, body = get("")
    assert b"<p>HOME</p>" in body and "x-personalize-debug" not in headers
    written = records(middleware, tmp_path)
    assert [r["path"] for r in written if r["type"] == "pageview"] == ["/"]  # only the non-preview view


def test_a_goal_reached_while_previewing_is_not_recorded(tmp_path: Path) -> None:
    from starlette.responses import Response

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def download(request: Request) -> Response:
        return Response(b"%PDF", media_type="application/pdf")

    routes = [Route("/", page), Route("/download", download)]
    app = PersonalizeMiddleware(Starlette(routes=routes),
                                config=config(tmp_path, goals={"paper": {"path": "/download"}}))
    test_client = TestClient(app, base_url="http://testserver")
    test_client.cookies.set("pmw_consent", ADAPTER_CONSENT.split("=", 1)[1])
    token = PreviewCodec([CORE_SECRET]).make("hero", "pricing", None, 60)
    assert "<p>PRICING</p>" in test_client.get(f"/?{PARAM}={token}").text
    assert test_client.get("/download").content == b"%PDF"
    assert records(app, tmp_path) == []
