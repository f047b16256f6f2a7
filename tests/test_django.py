"""The Django adapter, sync and async, through Django's own test clients."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import configure_django
from django.http import HttpResponse, StreamingHttpResponse
from django.template import engines
from django.test import AsyncClient, Client, override_settings
from django.urls import path

PAGE = (
    "{% load personalize %}<html><body>"
    '{% personalize "hero" %}<h1>Default {{ who }}</h1>{% endpersonalize %}'
    "</body></html>"
)


def page_view(request):
    html = engines["django"].from_string(PAGE).render({"who": "<you>"})
    response = HttpResponse(html)
    response["ETag"] = '"v1"'
    response.set_cookie("app_session", "abc")
    return response


def thanks_view(request):
    return HttpResponse("<p>thanks</p>")


def stream_view(request):
    return StreamingHttpResponse(iter([b"<!-- personalize:hero -->x", b"<!-- /personalize:hero -->"]),
                                 content_type="text/html")


def boom_view(request):
    raise KeyError("the app's own error")


urlpatterns = [path("", page_view), path("thanks", thanks_view), path("stream", stream_view),
               path("boom", boom_view)]

configure_django()


def config(tmp_path: Path) -> dict:
    return {
        "secret_keys": ["django-test-secret-0123456789"],
        "goals": {"signup": {"path": "/thanks", "value": 50}},
        "slots": {"hero": {"rules": [
            {"if": {"query.plan": "pro"}, "variant": "pro", "template": "<h1>Pro ✓</h1>"},
            {"if": {"visits": {"gte": 1}}, "variant": "known", "template": "<h1>Welcome back</h1>"},
        ]}},
        "sink": f"jsonl:{tmp_path / 'touchpoints.jsonl'}",
        "delivery": {"flush_interval_s": 0.05},
    }


def records(tmp_path: Path) -> list[dict]:
    file = tmp_path / "touchpoints.jsonl"
    return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []


def flush_all() -> None:
    import personalize_mw

    assert personalize_mw.flush(5.0)


CONSENT_ALL = "analytics=1&personalization=1&advertising=0"


@pytest.mark.parametrize("client_class", [Client, AsyncClient])
def test_rewrites_page_and_keeps_app_cookies(tmp_path, client_class):
    with override_settings(PERSONALIZE_CONFIG=config(tmp_path)):
        client = client_class()
        response = client.get("/?plan=pro") if client_class is Client else _run(client.get("/?plan=pro"))
    body = response.content.decode()
    assert "<!-- personalize:hero --><h1>Pro ✓</h1><!-- /personalize:hero -->" in body
    assert int(response["Content-Length"]) == len(response.content)
    assert "private" in response["Cache-Control"] and "Cookie" in response["Vary"]
    assert "ETag" not in response
    assert response.cookies["app_session"].value == "abc"
    assert "pmw_id" not in response.cookies  # no consent, no id
    flush_all()
    exposures = [r for r in records(tmp_path) if r["type"] == "exposure"]
    assert exposures and exposures[0]["variant"] == "pro" and exposures[0]["visitor"] is None


def _run(coro):
    import asyncio

    return asyncio.run(coro)


def test_consent_then_profile_rule_fires(tmp_path):
    with override_settings(PERSONALIZE_CONFIG=config(tmp_path)):
        client = Client()
        answer = client.post("/_personalize/consent", data=json.dumps({"all": True}),
                             content_type="application/json", HTTP_ORIGIN="http://testserver")
        assert answer.status_code == 204
        assert answer.cookies["pmw_consent"].value.startswith("analytics=1")
        first = client.get("/")
        assert "pmw_id" in first.cookies and first.cookies["pmw_id"]["httponly"]
        second = client.get("/")
        assert "Welcome back" in second.content.decode()
        client.get("/thanks")
    flush_all()
    recs = records(tmp_path)
    conversions = [r for r in recs if r["type"] == "conversion"]
    assert conversions and conversions[0]["goal"] == "signup" and conversions[0]["value"] == 50
    assert conversions[0]["visitor"] is not None
    assert {r["visitor"] for r in recs} == {conversions[0]["visitor"]}


def test_cross_origin_consent_is_refused(tmp_path):
    with override_settings(PERSONALIZE_CONFIG=config(tmp_path)):
        answer = Client().post("/_personalize/consent", data=json.dumps({"all": True}),
                               content_type="application/json", HTTP_ORIGIN="https://evil.example")
    assert answer.status_code == 403
    assert "pmw_consent" not in answer.cookies


def test_streaming_response_passes_untouched(tmp_path):
    with override_settings(PERSONALIZE_CONFIG=config(tmp_path)):
        response = Client().get("/stream?plan=pro")
    assert b"".join(response.streaming_content) == b"<!-- personalize:hero -->x<!-- /personalize:hero -->"


def test_app_exception_propagates(tmp_path):
    with override_settings(PERSONALIZE_CONFIG=config(tmp_path)):
        client = Client(raise_request_exception=True)
        with pytest.raises(KeyError, match="the app's own error"):
            client.get("/boom")


def test_internal_failure_serves_original(tmp_path, monkeypatch):
    from personalize_mw.core.personalizer import Personalizer

    def broken(self, *args, **kwargs):
        raise RuntimeError("internal bug")

    monkeypatch.setattr(Personalizer, "visit", broken)
    with override_settings(PERSONALIZE_CONFIG=config(tmp_path)):
        response = Client().get("/?plan=pro")
    assert response.status_code == 200
    assert "<h1>Default &lt;you&gt;</h1>" in response.content.decode()
    assert response["ETag"] == '"v1"'


def test_missing_setting_is_a_clear_error():
    from django.core.exceptions import ImproperlyConfigured

    from personalize_mw.django import PersonalizeMiddleware

    with override_settings(PERSONALIZE_CONFIG=None):
        with pytest.raises(ImproperlyConfigured, match="PERSONALIZE_CONFIG"):
            PersonalizeMiddleware(lambda request: HttpResponse(""))


def test_template_tag_emits_wire_format():
    html = engines["django"].from_string(PAGE).render({"who": "<b>"})
    assert html.startswith("<html><body><!-- personalize:hero --><h1>Default &lt;b&gt;</h1>")


def test_stats_endpoint_in_debug(tmp_path):
    with override_settings(PERSONALIZE_CONFIG={**config(tmp_path), "debug": True}):
        answer = Client().get("/_personalize/stats")
    assert answer.status_code == 200
    assert set(next(iter(json.loads(answer.content)["sinks"].values()))) >= {"sent", "dropped", "spooled"}
