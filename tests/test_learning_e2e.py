"""Crowd and bandit slots through the real middleware: learning from served pages, the store shared
by worker processes (SQLite, Redis), and Redis stopped mid-run with every page still served."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from conftest import CORE_SECRET
from processes import run_workers
from servers import RedisServer, redis_server, redis_session  # noqa: F401  (fixtures)
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from personalize_mw.asgi import PersonalizeMiddleware
from personalize_mw.state import open_store

CONSENT = "analytics=1&personalization=1&advertising=0"
LIST = "<ul>{% for item in items %}<li>{{ item.title }}</li>{% endfor %}</ul>"


def config(tmp: Path, state: str) -> dict[str, Any]:
    return {
        "secret_keys": [CORE_SECRET], "sink": f"jsonl:{tmp / 'tp.jsonl'}", "state": state,
        "delivery": {"flush_interval_s": 0.05},
        "goals": {"signup": {"path": "/thanks"}},
        "slots": {
            "related": {"strategy": "crowd", "crowd": {"paths": ["/blog/"], "template": LIST}},
            "cta": {"strategy": "bandit", "variants": [{"variant": "a", "template": "<b>A</b>"},
                                                       {"variant": "b", "template": "<b>B</b>"}],
                    "bandit": {"goal": "signup", "min_exposures": 5, "update_every_s": 1}},
        },
    }


async def page(request: Any) -> HTMLResponse:
    path = request.url.path
    return HTMLResponse(f"<html><head><title>Title of {path}</title></head><body>"
                        "<!-- personalize:related -->none<!-- /personalize:related -->"
                        "<!-- personalize:cta -->default<!-- /personalize:cta --></body></html>")


def client(tmp: Path, state: str) -> TestClient:
    app = Starlette(routes=[Route("/{path:path}", page)])
    wrapped = PersonalizeMiddleware(app, config=config(tmp, state))
    return TestClient(wrapped, cookies={"pmw_consent": CONSENT})


def store_of(test_client: TestClient) -> Any:
    return test_client.app.core.slots["cta"].strategies[0].store  # type: ignore[attr-defined]


def test_pages_teach_the_crowd_and_the_bandit(tmp_path: Path) -> None:
    reader = client(tmp_path, "memory")
    for path in ("/blog/one", "/blog/two", "/thanks"):
        assert reader.get(path).status_code == 200
    store = store_of(reader)
    store.flush()
    assert set(store.backend.read("crowd:co:/blog/one")) == {"/blog/two"}
    counts = store.backend.read("bandit:cta")
    # One visit exposed (two pages with a variant; none on /thanks, where the goal is reached) and converted.
    assert sum(v for k, v in counts.items() if k.startswith("n:")) == 1
    assert sum(v for k, v in counts.items() if k.startswith("s:")) == 1
    store.invalidate()
    newcomer = client(tmp_path, "memory")
    newcomer.app.core = reader.app.core  # type: ignore[attr-defined]  (the same process' store)
    body = newcomer.get("/blog/one").text
    assert "<li>Title of /blog/two</li>" in body  # learned title, co-read page
    assert "<b>A</b>" in body or "<b>B</b>" in body


def _worker(tmp: str, state: str, name: str) -> None:
    test_client = client(Path(tmp), state)
    for i in range(20):  # twenty new visitors, one visit each
        test_client.cookies = {"pmw_consent": CONSENT}  # type: ignore[assignment]
        assert test_client.get(f"/blog/{name}-{i}").status_code == 200
    store_of(test_client).close()


def _two_workers(tmp: Path, state: str) -> dict[str, float]:
    run_workers(_worker, [(str(tmp), state, name) for name in ("w1", "w2")], timeout=120)
    reader = open_store(state)
    try:
        return reader.backend.read("bandit:cta")
    finally:
        reader.close()


# Generous timeouts: this is about sharing, and the test machine may be loaded.
def test_two_workers_share_bandit_counts_through_sqlite(tmp_path: Path) -> None:
    counts = _two_workers(tmp_path, f"sqlite:{tmp_path / 'state.db'}?timeout_ms=5000")
    assert counts.get("n:a", 0) + counts.get("n:b", 0) == 40


def test_two_workers_share_bandit_counts_through_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    counts = _two_workers(tmp_path, f"{redis_server.url}/0?timeout_ms=5000")
    assert counts.get("n:a", 0) + counts.get("n:b", 0) == 40


def test_redis_stopped_mid_run_pages_are_served_with_defaults(tmp_path: Path, redis_server: RedisServer) -> None:
    site = client(tmp_path, f"{redis_server.url}/0?timeout_ms=1000")  # a stopped server refuses at once
    store = store_of(site)
    store.retry_after_s = 0.5
    store.max_stale_s = 0.2
    assert "<b>" in site.get("/blog/first").text  # the bandit decides while Redis is up
    redis_server.stop()
    # The next failed read or write (the flusher runs every 0.5 s) marks the store down.
    deadline = time.monotonic() + 10
    while "<b>" in site.get("/blog/noticing").text:
        assert time.monotonic() < deadline, "the bandit kept deciding with Redis down"
        time.sleep(0.05)
    for i in range(5):
        response = site.get(f"/blog/down-{i}")
        assert response.status_code == 200
        assert "default" in response.text and "none" in response.text  # both slots kept their defaults
    redis_server.start()
    deadline = time.monotonic() + 15
    while "<b>" not in site.get("/blog/back").text:
        assert time.monotonic() < deadline, "decisions did not come back with Redis"
        time.sleep(0.1)
