"""``GET /_personalize/stats``: delivery counters, only when ``debug: true``."""

from __future__ import annotations

import json

from flask import Flask
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from personalize_mw import PersonalizeMiddleware, PersonalizeWSGIMiddleware
from tests.conftest import AdapterSetup


def _starlette(config: dict) -> PersonalizeMiddleware:
    async def page(request):
        return HTMLResponse("<p>app's own /_personalize/stats</p>")

    return PersonalizeMiddleware(Starlette(routes=[Route("/{p:path}", page)]), config=config)


def test_stats_are_served_only_in_debug(adapter_setup: AdapterSetup) -> None:
    off = TestClient(_starlette(adapter_setup.config()))
    assert off.get("/_personalize/stats").text == "<p>app's own /_personalize/stats</p>"

    app = _starlette(adapter_setup.config(debug=True))
    client = TestClient(app)
    client.get("/")  # one page view without markers: one pageview record
    assert app.core.queue.flush(5)
    answer = client.get("/_personalize/stats")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    [counts] = json.loads(answer.text)["sinks"].values()
    assert counts["sent"] == 1 and counts["dropped"] == 0 and counts["queued"] == 0
    assert client.post("/_personalize/stats").status_code == 405


def test_stats_on_wsgi(adapter_setup: AdapterSetup) -> None:
    flask_app = Flask(__name__)
    flask_app.route("/")(lambda: "<p>hi</p>")
    flask_app.wsgi_app = PersonalizeWSGIMiddleware(flask_app.wsgi_app, config=adapter_setup.config(debug=True))
    answer = flask_app.test_client().get("/_personalize/stats")
    assert answer.status_code == 200
    assert set(next(iter(answer.get_json()["sinks"].values()))) >= {"queued", "sent", "retried", "spooled", "dropped"}
