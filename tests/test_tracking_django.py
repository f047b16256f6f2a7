"""identify() and track() from Django views (sync and async), through Django's test clients."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import configure_django
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path

import personalize_mw

SECRET = "django-tracking-secret-0123456789"
CONSENT = "analytics=1&personalization=1&advertising=0"
CALLS: list[bool] = []
CORES: list[Any] = []  # the middleware's core, as the views see it: flushed before reading


def seen(request: HttpRequest) -> None:
    state = getattr(request, "personalize_mw")
    if state is not None:
        CORES.append(state.core)


def login(request: HttpRequest) -> HttpResponse:
    seen(request)
    CALLS.append(personalize_mw.identify(request, "carol"))
    return HttpResponseRedirect("/account")


def demo(request: HttpRequest) -> HttpResponse:
    seen(request)
    CALLS.append(personalize_mw.track(request, "demo_requested", value=20))
    return JsonResponse({"ok": True})


async def async_page(request: HttpRequest) -> HttpResponse:
    seen(request)
    CALLS.append(personalize_mw.track(request, "chat_opened", props={"agent": "bot"}))
    return HttpResponse("<html><body>async</body></html>")


def nothing(request: HttpRequest) -> HttpResponse:
    seen(request)
    return HttpResponse(status=204)


urlpatterns = [path("login", login), path("demo", demo), path("async-page", async_page), path("nothing", nothing)]

configure_django()


@pytest.fixture
def sink(tmp_path: Path) -> Path:
    return tmp_path / "touchpoints.jsonl"


def config(sink: Path, **overrides: Any) -> dict[str, Any]:
    return {"secret_keys": [SECRET], "goals": {"demo_requested": {"path": "/demo/done", "value": 5, "client": True}},
            "sink": f"jsonl:{sink}", "delivery": {"flush_interval_s": 0.05}, "ip": "truncate", **overrides}


def records(sink: Path) -> list[dict[str, Any]]:
    for core in CORES:
        assert core.queue.flush(5.0)
    CORES.clear()
    return [json.loads(line) for line in sink.read_text().splitlines()] if sink.exists() else []


def hashed(user: str) -> str:
    key = hmac.new(SECRET.encode(), b"personalize_mw.identity.v1", hashlib.sha256).digest()
    return hmac.new(key, user.encode(), hashlib.sha256).hexdigest()


def test_sync_views_identify_and_track(sink: Path) -> None:
    CALLS.clear()
    with override_settings(PERSONALIZE_CONFIG=config(sink), ROOT_URLCONF=__name__):
        client = Client(REMOTE_ADDR="198.51.100.23")
        client.cookies["pmw_consent"] = CONSENT
        assert client.post("/login").status_code == 302
        assert "pmw_id" in client.cookies  # set on the redirect that carried the identify
        client.post("/demo")
    assert CALLS == [True, True]
    identify, conversion = records(sink)
    assert (identify["type"], identify["user"], identify["ip"]) == ("identify", hashed("carol"), "198.51.100.0")
    assert (conversion["type"], conversion["goal"], conversion["value"]) == ("conversion", "demo_requested", 20)
    assert identify["visitor"] == conversion["visitor"] is not None
    assert identify["session"] == conversion["session"]


def test_async_view_tracks_an_event_without_consent(sink: Path) -> None:
    CALLS.clear()
    with override_settings(PERSONALIZE_CONFIG=config(sink), ROOT_URLCONF=__name__):
        response = asyncio.run(AsyncClient().get("/async-page"))
    assert response.status_code == 200 and CALLS == [True]
    pageview, event = records(sink)
    assert (pageview["type"], event["type"], event["event"], event["props"]) == \
        ("pageview", "event", "chat_opened", {"agent": "bot"})
    assert event["visitor"] is None and event["ip"] is None  # no consent: no id, no address


def test_identify_without_consent_records_nothing(sink: Path) -> None:
    CALLS.clear()
    with override_settings(PERSONALIZE_CONFIG=config(sink), ROOT_URLCONF=__name__):
        response = Client().post("/login")
    assert CALLS == [False]
    assert "pmw_id" not in response.cookies
    assert records(sink) == []


def test_disabled_is_quiet(sink: Path) -> None:
    CALLS.clear()
    with override_settings(PERSONALIZE_CONFIG=config(sink, enabled=False), ROOT_URLCONF=__name__):
        Client().post("/demo")
    assert CALLS == [False]
    assert records(sink) == []


@pytest.mark.parametrize("client_class", [Client, AsyncClient])
def test_event_endpoint(sink: Path, client_class: Any) -> None:
    with override_settings(PERSONALIZE_CONFIG=config(sink, events={"rate_per_minute": 1}), ROOT_URLCONF=__name__):
        client = client_class()
        client.cookies["pmw_consent"] = CONSENT

        def post(origin: str) -> Any:
            answer = client.post("/_personalize/event", data=b'{"name": "demo_requested", "path": "/pricing"}',
                                 content_type="application/json", headers={"origin": origin})
            return asyncio.run(answer) if client_class is AsyncClient else answer

        assert post("https://evil.example").status_code == 403
        accepted = post("http://testserver")
        assert accepted.status_code == 202 and "pmw_id" in accepted.cookies
        client.cookies["pmw_id"] = accepted.cookies["pmw_id"].value
        # The first post had no id yet; now the visitor's own bucket too: one a minute.
        assert [post("http://testserver").status_code for _ in range(2)] == [202, 429]
        if client_class is Client:
            client.get("/nothing")  # the view hands us the middleware's core, to flush
        else:
            asyncio.run(client.get("/nothing"))
    first, second = records(sink)
    assert (first["type"], first["goal"], first["value"], first["path"]) == \
        ("conversion", "demo_requested", 5, "/pricing")
    assert first["visitor"] == second["visitor"] is not None

