"""Enriched fields in records: `record:` opts in, analytics consent gates, only what the page asked for.

Every page goes through the real middleware (Starlette) with a real `company` enricher
reading a CSV of ranges this test writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from servers import PostgresServer, pg, postgres  # noqa: F401  (fixtures)
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


def test_a_field_of_the_providers_own_mapping_and_any_crm_field_may_be_recorded(make_core_config: Any,
                                                                               tmp_path: Path) -> None:
    load_config(make_core_config(enrichment={
        "company": {"type": "company", "database": str(companies(tmp_path)), "fields": {"sector": "industry"},
                    "record": ["sector", "size"]},
        "crm": {"type": "http", "url": "http://crm.test/{user}", "record": ["lifecycle_stage"]}}))


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
    ({"type": "company", "record": ["industy"]}, "enrichment.company.record.0: company has no field 'industy': "
                                                 "did you mean 'industry'?"),
    ({"type": "http", "url": "http://crm.test/{user}", "fields": ["stage"], "record": ["plan"]}, "no field 'plan'"),
])
def test_bad_record_lists_are_refused_at_their_key(make_core_config: Any, tmp_path: Path,
                                                   entry: dict[str, Any], message: str) -> None:
    if entry["type"] == "company":
        entry = {**entry, "database": str(companies(tmp_path))}
    with pytest.raises(ConfigError) as caught:
        load_config(make_core_config(enrichment={"company" if entry["type"] == "company" else "crm": entry}))
    assert message in str(caught.value)


# ---------------------------------------------------------------- suggest segments on recorded fields

GROUPS = {  # ip, industry recorded (None: the database knows nothing), P(read) per page, P(sign-up)
    "bank": (BANK, "bank", {"/blog/a": 0.8, "/pricing": 0.5, "/docs/x": 0.1}, 0.4),
    "saas": (SAAS, "saas", {"/blog/a": 0.8, "/pricing": 0.5, "/docs/x": 0.1}, 0.05),
    "none": (NOWHERE, None, {"/blog/a": 0.2, "/pricing": 0.3, "/docs/x": 0.9}, 0.1),
}


def _planted_records(path: Path, visitors: int = 1500) -> dict[str, tuple[str, str, list[tuple[Any, ...]]]]:
    """Records as the middleware writes them with `record: [industry]`: banks read what SaaS firms read and
    convert eight times as often; only the recorded industry tells them apart. Visitor -> (group, ip, views)."""
    import random

    rng, lines, truth = random.Random(5), [], {}
    for n in range(visitors):
        group = ("bank", "saas", "none")[n % 3]
        ip, industry, reads, converts = GROUPS[group]
        visitor, t = f"v{n:05d}", 1_767_225_600 + n * 60
        views: list[tuple[Any, ...]] = []
        for page, share in [("/", 1.0), *reads.items()]:
            if rng.random() < share:
                t += 5
                lines.append({"ts": _iso(t), "type": "pageview", "visitor": visitor, "session": f"s{n}",
                              "path": page, "channel": "direct", "device": "desktop", "country": "DE",
                              "props": {"company.industry": industry} if industry else None})
                views.append((float(t), f"s{n}", page, "direct", "desktop", "DE"))
        if rng.random() < converts:
            lines.append({"ts": _iso(t + 5), "type": "conversion", "visitor": visitor, "session": f"s{n}",
                          "path": "/signup", "channel": "direct", "goal": "signup", "value": None, "props": None})
        truth[visitor] = (group, ip, views)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), "utf-8")
    return truth


def _iso(t: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_suggest_segments_clusters_by_a_recorded_company_field_and_the_engine_agrees(
        make_core_config: Any, tmp_path: Path) -> None:
    import yaml

    from personalize_mw.analytics.segment_suggest import suggest_segments
    from personalize_mw.analytics.visitor_features import snapshot_profile
    from personalize_mw.rules.engine import compiled_slots

    records = tmp_path / "records.jsonl"
    truth = _planted_records(records)
    config_dict = make_core_config(enrichment={"company": {"type": "company", "database": str(companies(tmp_path)),
                                                           "record": ["industry"]}},
                                   goals={"signup": {"path": "/signup"}})
    found = suggest_segments([str(records)], config=load_config(config_dict), goal="signup", max_k=4)
    names = [f.name for f in found.data.features]
    assert {"company.industry bank", "company.industry saas"} <= set(names), names
    bank = found.data.features[names.index("company.industry bank")]
    assert (bank.condition, bank.negation) == ({"company.industry": "bank"}, {"company.industry": {"ne": "bank"}})
    suggested = yaml.safe_load(found.text)["segments"]
    assert "company.industry" in found.text
    # The banks are a segment of their own, told apart by the recorded field alone.
    segment_of = found.segment_of()
    banks = {segment_of[v] for v, (group, _, _) in truth.items() if group == "bank"}
    assert len(banks) == 1 and None not in banks
    assert all(segment_of[v] not in banks for v, (group, _, _) in truth.items() if group != "bank")

    # The emitted YAML loads beside the config, and the engine, asking the real enricher about each
    # visitor's address at the snapshot, puts every visitor where the fitted rules do.
    merged = load_config({**config_dict, "segments": suggested})
    compiled = compiled_slots(merged)
    try:
        tests = {name: compiled.segments[name] for name in suggested}
        features = [(f, compile_feature(f.condition, compiled), compile_feature(f.negation, compiled))
                    for f in found.data.features]
        mismatched = []
        for index, visitor in enumerate(found.data.visitors):
            _, ip, views = truth[visitor]
            ctx, profile, now = snapshot_profile(visitor, views)
            ctx.client = ip
            matched = [name for name, test in tests.items() if test(ctx, profile, now)]
            if matched != ([segment_of[visitor]] if segment_of[visitor] else []):
                mismatched.append((visitor, matched, segment_of[visitor]))
            row = found.data.rows[found.data.row_of[index]]
            for (feature, holds, fails), value in zip(features, row, strict=True):
                if holds(ctx, profile, now) != bool(value) or fails(ctx, profile, now) == bool(value):
                    mismatched.append((visitor, feature.name, int(value)))
        assert not mismatched, mismatched[:5]
    finally:
        assert compiled.enrichment is not None
        compiled.enrichment.close()


def test_journey_stages_and_segments_of_the_config_read_the_recorded_fields(make_core_config: Any,
                                                                            tmp_path: Path) -> None:
    from personalize_mw.analytics.segment_suggest import suggest_segments

    records = tmp_path / "records.jsonl"
    truth = _planted_records(records, 600)
    config = load_config(make_core_config(
        enrichment={"company": {"type": "company", "database": str(companies(tmp_path)), "record": ["industry"]}},
        segments={"banks": {"company.industry": "bank"}},
        journey={"stages": [{"name": "browsing"}, {"name": "banking", "if": "banks"}]}))
    found = suggest_segments([str(records)], config=config, goal="signup", with_stages=True, max_k=3)
    data = found.data
    names = [f.name for f in data.features]
    column = data.rows[data.row_of, names.index("stage banking")]
    assert [v for v, held in zip(data.visitors, column, strict=True) if held] == sorted(
        v for v, (group, _, _) in truth.items() if group == "bank")


def compile_feature(spec: Any, compiled: Any) -> Any:
    from personalize_mw.rules.conditions import compile_condition

    return compile_condition(spec, {}, enriched=compiled.enrichment)


@pytest.mark.parametrize("store", ["jsonl", "sqlite", "postgresql"])
def test_every_store_gives_the_props_to_the_command_that_asks_and_only_to_it(
        store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    import uuid

    from personalize_mw.analytics.source import open_source
    from personalize_mw.touchpoints.jsonl import JsonlSink
    from personalize_mw.touchpoints.postgresql import PostgresSink
    from personalize_mw.touchpoints.record import finalize, new_record

    consent = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
    records = [finalize(new_record("pageview", 1_767_225_600.0 + n, visitor=f"v{n}", session="s", path="/",
                                   referrer_host=None, channel="direct", utm={}, consent=consent, props=props))
               for n, props in enumerate([{"company.industry": "bank", "company.size": 40, "plan": "pro"}, None])]
    if store == "jsonl":
        sink: Any = JsonlSink(tmp_path / "tp.jsonl")
        source = str(tmp_path / "tp*.jsonl")
    elif store == "sqlite":
        from personalize_mw.touchpoints.sqlite import SqliteSink

        sink, source = SqliteSink(tmp_path / "tp.db"), f"sqlite:{tmp_path / 'tp.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("pg")
        source = f"{server.url}?table=props_{uuid.uuid4().hex[:10]}"
        sink = PostgresSink(source)
    sink.write(records)
    sink.close()
    con = open_source([source], props=True)
    rows = con.execute("""SELECT visitor, props->>'$."company.industry"', (props->>'$."company.size"')::INTEGER
                          FROM touchpoints ORDER BY visitor""").fetchall()
    assert rows == [("v0", "bank", 40), ("v1", None, None)]
    con.close()
    plain = open_source([source])
    assert "props" not in {row[0] for row in plain.execute("DESCRIBE touchpoints").fetchall()}
    plain.close()
