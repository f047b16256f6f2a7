"""Pages in other ASCII-compatible charsets, and which responses count as a goal reached."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from personalize_mw import PersonalizeMiddleware
from tests.conftest import ADAPTER_CONSENT, AdapterSetup


def _app(setup: AdapterSetup, body: bytes, media_type: str, status: int = 200,
         headers: dict[str, str] | None = None) -> PersonalizeMiddleware:
    async def page(request):
        return Response(body, status_code=status, media_type=media_type, headers=headers)

    inner = Starlette(routes=[Route("/{path:path}", page)])
    return PersonalizeMiddleware(inner, config=setup.config())


@pytest.mark.parametrize("charset", ["windows-1252", "iso-8859-15", "utf-8"])
def test_variant_is_written_in_the_page_charset(adapter_setup: AdapterSetup, charset: str) -> None:
    default = "Grüße"  # the author's default, in the page's own encoding
    body = f"<p>€ {default}</p><!-- personalize:hero -->{default}<!-- /personalize:hero -->".encode(charset)
    app = _app(adapter_setup, body, f"text/html; charset={charset}")
    response = TestClient(app).get("/")
    assert response.content.decode(charset) == "<p>€ Grüße</p><!-- personalize:hero --><p>Grüße aus Köln</p><!-- /personalize:hero -->"
    assert int(response.headers["content-length"]) == len(response.content)


def test_characters_the_charset_lacks_become_references(adapter_setup: AdapterSetup) -> None:
    config = adapter_setup.config(slots={"hero": {"rules": [
        {"if": {"path": "/"}, "variant": "v", "template": "<p>{{ '日本' }} {{ slot.default }}</p>"}]}})

    async def page(request):
        body = "<!-- personalize:hero -->Grüße<!-- /personalize:hero -->".encode("latin-1")
        return Response(body, media_type="text/html; charset=latin-1")

    app = PersonalizeMiddleware(Starlette(routes=[Route("/", page)]), config=config)
    response = TestClient(app).get("/")
    assert response.content == "<!-- personalize:hero --><p>&#26085;&#26412; Grüße</p><!-- /personalize:hero -->".encode("latin-1")


@pytest.mark.parametrize("status", [204, 206, 304])
def test_partial_empty_or_revalidated_answers_are_no_conversion(adapter_setup: AdapterSetup, status: int) -> None:
    app = _app(adapter_setup, b"" if status != 206 else b"part", "application/pdf", status,
               {"etag": '"v1"', "last-modified": "Wed, 21 Oct 2015 07:28:00 GMT"})
    client = TestClient(app)
    response = client.get("/signup", headers={"cookie": ADAPTER_CONSENT})
    assert response.status_code == status
    assert response.headers.get("etag") == '"v1"' and "set-cookie" not in response.headers
    assert [r for r in adapter_setup.records(app.core) if r["type"] == "conversion"] == []


def test_a_download_that_reaches_a_goal_keeps_its_validators(adapter_setup: AdapterSetup) -> None:
    app = _app(adapter_setup, b"%PDF-1.4", "application/pdf", 200, {"etag": '"v1"'})
    response = TestClient(app).get("/signup", headers={"cookie": ADAPTER_CONSENT})
    assert response.content == b"%PDF-1.4"
    assert "pmw_id=" in response.headers["set-cookie"]
    assert "private" in response.headers["cache-control"]
    assert response.headers.get("etag") == '"v1"'  # the bytes are the app's: its validator still holds
    assert [r["goal"] for r in adapter_setup.records(app.core) if r["type"] == "conversion"] == ["signup"]
