"""Enriched fields in records: `record:` opts in, analytics consent gates, only what the page asked for.

Every page goes through the real middleware (Starlette) with a real `company` enricher
reading a CSV of ranges this test writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import personalize_mw
from personalize_mw import PersonalizeMiddleware
from personalize_mw.config import load_config
from personalize_mw.errors import ConfigError

MARKED = "<html><body><!-- personalize:hero --><p>Default</p><!-- /personalize:hero --></body></html>"
PLAIN = "<html><body><p>Nothing of ours</p></body></html>"
BANK, SAAS, NOWHERE = "203.0.113.9", "198.51.100.7", "10.1.2.3"
FULL = "analytics=1&personalization=1&advertising=0"
ANALYTICS_ONLY = "analytics=1&personalization=0&advertising=0"
HERO = {"hero": {"rules": [{"if": {"company.industry": "bank"}, "variant": "bank", "template": "<p>For banks</p>"}]}}


def companies(tmp_path: Path) -> Path:
    path = tmp_path / "companies.csv"
    path.write_text("network,name,industry,size\n203.0.113.0/24,Tiny Bank,bank,40\n"
                    "198.51.100.0/24,Acme Cloud,saas,450\n", "utf-8")
    return path


class Site:
    def __init__(self, config: dict[str, Any]) -> None:
        async def marked(request: Request) -> HTMLResponse:
            return HTMLResponse(MARKED)

        async def plain(request: Request) -> HTMLResponse:
            return HTMLResponse(PLAIN)

        async def plan(request: Request) -> HTMLResponse:
            personalize_mw.context(request, plan="pro")
            return HTMLResponse(MARKED)

        routes = [Route("/", marked), Route("/plain", plain), Route("/plan", plan)]
        self.app = PersonalizeMiddleware(Starlette(routes=routes), config=config)
        self.sink = Path(config["sink"][len("jsonl:"):])

    def get(self, path: str, ip: str, consent: str | None) -> str:
        http = TestClient(self.app, client=(ip, 40000))
        if consent is not None:
            http.cookies.set("pmw_consent", consent)
        response = http.get(path)
        assert response.status_code == 200
        return response.text

    def records(self) -> list[dict[str, Any]]:
        enrichment = self.app.core.enrichment
        if enrichment is not None:
            enrichment.close()
        self.app.core.queue.close()
        return [json.loads(line) for line in self.sink.read_text("utf-8").splitlines()]


def _site(make_core_config: Any, tmp_path: Path, **entry: Any) -> Site:
    return Site(make_core_config(enrichment={"company": {"type": "company", "database": str(companies(tmp_path)),
                                                         **entry}},
                                 slots=HERO, merge_fields={"record": ["plan"]}))


def _pageview_props(records: list[dict[str, Any]]) -> list[Any]:
    return [r["props"] for r in records if r["type"] == "pageview"]


def test_record_puts_the_named_fields_into_the_pageview_with_analytics_consent_only(
        make_core_config: Any, tmp_path: Path) -> None:
    site = _site(make_core_config, tmp_path, record=["industry", "size"])
    assert "For banks" in site.get("/", BANK, FULL)
    site.get("/", SAAS, ANALYTICS_ONLY)   # no visitor id, still analytics: recorded
    site.get("/", BANK, None)             # opt-in without a choice: the rule fires, nothing is recorded
    site.get("/", NOWHERE, FULL)          # nothing known: nothing to record
    records = site.records()
    assert _pageview_props(records) == [{"company.industry": "bank", "company.size": 40},
                                        {"company.industry": "saas", "company.size": 450}, None, None]
    exposure = next(r for r in records if r["type"] == "exposure")
    assert exposure["variant"] == "bank" and exposure["props"] is None  # the pageview only
    assert "Tiny Bank" not in site.sink.read_text("utf-8")  # `name` was not listed


def test_only_what_the_page_asked_for_is_recorded_and_merge_fields_stay_beside_it(
        make_core_config: Any, tmp_path: Path) -> None:
    site = _site(make_core_config, tmp_path, record=["industry"])
    site.get("/plain", BANK, FULL)  # no slot, so no enricher was asked: no lookup to record
    site.get("/plan", BANK, FULL)
    records = site.records()
    assert _pageview_props(records) == [None, {"plan": "pro", "company.industry": "bank"}]
    assert [r["props"] for r in records if r["type"] == "exposure"] == [{"plan": "pro"}]


def test_without_record_nothing_enriched_is_recorded(make_core_config: Any, tmp_path: Path) -> None:
    site = _site(make_core_config, tmp_path)
    assert site.app.core.recorded_enriched is None  # nothing on the request path looks
    assert "For banks" in site.get("/", BANK, FULL)
    records = site.records()
    assert [r["props"] for r in records] == [None, None] and "company." not in site.sink.read_text("utf-8")


@pytest.mark.parametrize(("entry", "message"), [
    ({"type": "company", "record": ["email"]}, "looks like a person's data"),
    ({"type": "company", "record": ["owner_first_name"]}, "looks like a person's data"),
    ({"type": "company", "record": ["industry-code"]}, "is not a field name"),
    ({"type": "company", "record": "industry"}, "enrichment.company.record"),
    ({"type": "company", "recrod": ["industry"]}, "enrichment.company.recrod: Extra"),
    ({"type": "http", "url": "http://crm.test/{user}", "record": ["name"]}, "is about a person"),
])
def test_bad_record_lists_are_refused_at_their_key(make_core_config: Any, tmp_path: Path,
                                                   entry: dict[str, Any], message: str) -> None:
    if entry["type"] == "company":
        entry = {**entry, "database": str(companies(tmp_path))}
    with pytest.raises(ConfigError) as caught:
        load_config(make_core_config(enrichment={"company" if entry["type"] == "company" else "crm": entry}))
    assert message in str(caught.value)
