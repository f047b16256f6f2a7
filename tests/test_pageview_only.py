"""A page nothing of ours changes goes out as the app made it; its records are worked out after, the same."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from personalize_mw.config import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.core.request_state import RequestState
from personalize_mw.touchpoints.record import finalize_batch

PLAIN = b"<html><body><p>no markers here</p></body></html>"
HEADERS = {"host": "shop.example", "referer": "https://www.linkedin.com/feed", "user-agent": "Mozilla/5.0",
           "cookie": "pmw_consent=analytics=1&personalization=0&advertising=0"}


def state_for(core: Personalizer, headers: dict[str, str], query: str = "utm_source=news&utm_medium=email",
              path: str = "/thanks") -> RequestState:
    ctx = RequestContext("GET", "https", "shop.example", path, query, headers, client="203.0.113.9")
    return RequestState(core, ctx, lambda source, _header: source)


@pytest.fixture
def core(make_core_config: Callable[..., dict[str, Any]]) -> Personalizer:
    config = make_core_config(goals={"signup": {"path": "/thanks", "value": 7}}, ip="truncate",
                              slots={"hero": {"rules": [{"if": {"path_prefix": "/"}, "variant": "v",
                                                         "template": "<b>v</b>"}]}})
    return Personalizer(load_config(config), clock=lambda: 1_800_000_000.0)


def without_ids(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "id"} for r in records]


def test_the_late_records_equal_those_of_a_full_visit(core: Personalizer) -> None:
    later = core.pageview_only(state_for(core, HEADERS), PLAIN)
    assert later is not None
    quick = finalize_batch(list(later))
    full = finalize_batch(core.visit(state_for(core, HEADERS).context(), PLAIN, 1_800_000_000.0).records)
    assert [r["type"] for r in quick] == ["pageview", "conversion"]
    assert without_ids(quick) == without_ids(full)  # channel, referrer, UTM, consent, ip: all the same
    assert quick[0]["channel"] == "email" and quick[0]["ip"] == "203.0.113.0"


@pytest.mark.parametrize("change", ["personalization consent", "id cookie to expire", "preview link", "markers",
                                    "track() waiting", "debug"])
def test_whatever_changes_the_response_takes_the_full_visit(core: Personalizer, make_core_config: Callable[..., Any],
                                                            change: str) -> None:
    headers, query, body = dict(HEADERS), "", PLAIN
    if change == "personalization consent":
        headers["cookie"] = "pmw_consent=analytics=1&personalization=1&advertising=0"
    elif change == "id cookie to expire":
        headers["cookie"] += "; __Host-pmw_id=old"  # https: the prefixed name is ours
    elif change == "preview link":
        query = "pmw_preview=anything"
    elif change == "markers":
        body = b"<!-- personalize:hero -->x<!-- /personalize:hero -->"
    elif change == "debug":
        core = Personalizer(load_config(make_core_config(debug=True)))
    state = state_for(core, headers, query)
    if change == "track() waiting":
        from personalize_mw.core.events import Requested
        state.pending.append(Requested("track", 1.0, name="x"))
    assert core.pageview_only(state, body) is None


def test_a_site_with_a_learning_strategy_visits_every_page(make_core_config: Callable[..., Any]) -> None:
    crowd = {"related": {"strategy": "crowd", "crowd": {"template": "{{ items }}"}}}
    core = Personalizer(load_config(make_core_config(slots=crowd)))
    assert core.pageview_only(state_for(core, HEADERS), PLAIN) is None  # strategies see every page view


def test_through_the_middleware_the_pageview_reaches_the_sink(tmp_path: Path,
                                                              make_core_config: Callable[..., Any]) -> None:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from personalize_mw import PersonalizeMiddleware

    app = PersonalizeMiddleware(Starlette(routes=[Route("/", lambda r: HTMLResponse(PLAIN))]),
                                config=make_core_config())
    with TestClient(app) as client:
        assert client.get("/?utm_medium=cpc").content == PLAIN
    [record] = [json.loads(line) for line in (tmp_path / "touchpoints.jsonl").read_text().splitlines()]
    assert (record["type"], record["channel"], record["visitor"]) == ("pageview", "paid_search", None)
