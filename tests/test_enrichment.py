"""Enrichment: geoip and company from MMDB/CSV files the tests write, a CRM process on loopback, plug-ins.

Every page goes through the real middleware (Starlette), every CRM answer through
httpx to tests/crm.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from mmdb_files import COMPANIES, GEO, write_mmdb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import personalize_mw
from personalize_mw import PersonalizeMiddleware
from personalize_mw.config import load_config
from personalize_mw.enrich import registry
from personalize_mw.errors import ConfigError
from servers import CRMServer, crm, crm_session  # noqa: F401  (fixtures)

CONSENT = "analytics=1&personalization=1&advertising=0"
PAGE = "<html><body><!-- personalize:hero --><p>Default</p><!-- /personalize:hero --></body></html>"
SF, BERLIN, RETAIL, NOWHERE, MONTREAL = "198.51.100.7", "203.0.113.9", "192.0.2.44", "10.1.2.3", "2001:db8:1::5"


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.fixture
def databases(tmp_path: Path) -> dict[str, Path]:
    return {"geo": write_mmdb(tmp_path / "geo.mmdb", GEO),
            "companies": write_mmdb(tmp_path / "companies.mmdb", COMPANIES, "Company-Test")}


def slot(*rules: tuple[Any, str, str]) -> dict[str, Any]:
    return {"hero": {"rules": [{"if": cond, "variant": v, "template": t} for cond, v, t in rules]}}


class Site:
    def __init__(self, config: dict[str, Any]) -> None:
        async def page(request: Request) -> HTMLResponse:
            return HTMLResponse(PAGE)

        async def login(request: Request) -> RedirectResponse:
            personalize_mw.identify(request, request.query_params["user"])
            return RedirectResponse("/", 303)

        routes = [Route("/", page), Route("/pricing", page), Route("/login", login, methods=["POST"])]
        self.app = PersonalizeMiddleware(Starlette(routes=routes), config=config)

    def client(self, ip: str, consent: bool = False) -> TestClient:
        http = TestClient(self.app, client=(ip, 40000))
        if consent:
            http.cookies.set("pmw_consent", CONSENT)
        return http

    def hero(self, http: TestClient, path: str = "/") -> str:
        response = http.get(path)
        assert response.status_code == 200
        return response.text.split("<!-- personalize:hero -->")[1].split("<!-- /personalize:hero -->")[0]

    @property
    def enricher(self) -> Any:
        return lambda name: self.app.core.enrichment.enrichers[name]

    def close(self) -> None:
        if self.app.core.enrichment is not None:
            self.app.core.enrichment.close()
        self.app.core.queue.close()


# ---------------------------------------------------------------- geoip and company


def test_geoip_and_company_serve_request_rules_without_consent(make_core_config: Any,
                                                               databases: dict[str, Path]) -> None:
    config = make_core_config(
        enrichment={"geo": {"type": "geoip", "database": str(databases["geo"])},
                    "company": {"type": "company", "database": str(databases["companies"])}},
        slots=slot(({"all": [{"company.industry": {"in": ["saas", "fintech"]}}, {"company.size": {"gte": 200}}]},
                    "big-saas", "<p>{{ company.name }} in {{ geo.city }}, {{ geo.time_zone }}</p>"),
                   ({"geo.region": {"eq": "BE"}}, "berlin", "<p>Hallo {{ geo.region_name }}</p>"),
                   ({"geo.country": "CA"}, "canada", "<p>{{ geo.city }}</p>")))
    site = Site(config)
    try:
        assert site.hero(site.client(SF)) == "<p>Acme Cloud in San Francisco, America/Los_Angeles</p>"
        # Tiny Bank is fintech but has 40 people: the first rule's size fails, Berlin's region holds.
        assert site.hero(site.client(BERLIN)) == "<p>Hallo Berlin</p>"
        assert site.hero(site.client(MONTREAL)) == "<p>Montreal</p>"
        assert site.hero(site.client(RETAIL)) == "<p>Default</p>"  # a company, no rule for retail
        assert site.hero(site.client(NOWHERE)) == "<p>Default</p>"  # in neither database
        dual_stack = site.client("::ffff:198.51.100.8")  # an IPv4 client on an IPv6 socket
        assert site.hero(dual_stack) == "<p>Acme Cloud in San Francisco, America/Los_Angeles</p>"
    finally:
        site.close()


def test_company_from_a_csv_of_ranges(make_core_config: Any, tmp_path: Path) -> None:
    csv_file = tmp_path / "companies.csv"
    csv_file.write_text(
        "start_ip,end_ip,company_name,domain,industry,employees\n"
        "198.51.100.0,198.51.100.127,Acme Cloud,acme.example,saas,\"1,200\"\n"
        "198.51.100.128,198.51.100.255,Acme Labs,labs.example,saas,12\n"
        "2001:db8:2::,2001:db8:2::ffff,Six Corp,six.example,fintech,300\n", "utf-8")
    network_csv = tmp_path / "networks.csv"
    network_csv.write_text("network,name,industry,size\n203.0.113.0/25,Tiny Bank,fintech,250\n", "utf-8")
    config = make_core_config(
        enrichment={"company": {"type": "company", "database": str(csv_file),
                                "fields": {"name": "company_name", "size": "employees"}},
                    "firm": {"type": "company", "database": str(network_csv)}},
        slots=slot(({"company.size": {"gte": 200}}, "big", "<p>{{ company.name }} ({{ company.size }})</p>"),
                   ({"firm.industry": "fintech"}, "bank", "<p>{{ firm.name }}</p>")))
    site = Site(config)
    try:
        assert site.hero(site.client("198.51.100.100")) == "<p>Acme Cloud (1200)</p>"
        assert site.hero(site.client("198.51.100.200")) == "<p>Default</p>"  # 12 people
        assert site.hero(site.client("2001:db8:2::1")) == "<p>Six Corp (300)</p>"
        assert site.hero(site.client("203.0.113.5")) == "<p>Tiny Bank</p>"
        assert site.hero(site.client("203.0.113.200")) == "<p>Default</p>"  # outside the /25
    finally:
        site.close()


def test_enriched_fields_in_segments_journeys_and_experiments(make_core_config: Any,
                                                              databases: dict[str, Path]) -> None:
    config = make_core_config(
        enrichment={"company": {"type": "company", "database": str(databases["companies"])}},
        segments={"enterprise": {"company.size": {"gte": 200}}},
        journey={"stages": [{"name": "awareness"}, {"name": "evaluation", "if": {"company.industry": "saas"}}]},
        slots={
            "hero": {"rules": [{"if": "enterprise", "variant": "ent", "template": "<p>Enterprise</p>"}]},
            "next": {"strategy": "journey", "stages": {"evaluation": {"variant": "eval", "template": "<p>Eval</p>"}}},
            "cta": {"experiment": "cta-1", "holdout": 0.5,
                    "rules": [{"if": {"company.industry": {"ne": "retail"}}, "variant": "demo",
                               "template": "<p>Book a demo</p>"}]},
        })
    page = ("<html><body><!-- personalize:hero --><p>D</p><!-- /personalize:hero -->"
            "<!-- personalize:next --><p>D</p><!-- /personalize:next -->"
            "<!-- personalize:cta --><p>D</p><!-- /personalize:cta --></body></html>")

    async def view(request: Request) -> HTMLResponse:
        return HTMLResponse(page)

    app = PersonalizeMiddleware(Starlette(routes=[Route("/", view)]), config=config)
    try:
        seen = []
        for _ in range(40):
            http = TestClient(app, client=(SF, 40000))
            http.cookies.set("pmw_consent", CONSENT)
            seen.append(http.get("/").text)
        assert all("<p>Enterprise</p>" in text and "<p>Eval</p>" in text for text in seen)
        demo = sum("<p>Book a demo</p>" in text for text in seen)
        assert 5 < demo < 35  # the holdout keeps about half on the default
        retail = TestClient(app, client=(RETAIL, 40000))
        retail.cookies.set("pmw_consent", CONSENT)
        text = retail.get("/").text
        assert "<p>Enterprise</p>" in text and "<p>Eval</p>" not in text and "Book a demo" not in text
    finally:
        app.core.queue.close()
    sink = Path(config["sink"][len("jsonl:"):])
    exposures = [json.loads(line) for line in sink.read_text("utf-8").splitlines()]
    arms = {r["arm"] for r in exposures if r["type"] == "exposure" and r.get("experiment") == "cta-1"}
    assert arms == {"treatment", "holdout"}


def test_ip_data_is_never_stored_and_the_cookie_holds_no_enriched_value(make_core_config: Any,
                                                                        databases: dict[str, Path]) -> None:
    config = make_core_config(
        enrichment={"company": {"type": "company", "database": str(databases["companies"])},
                    "geo": {"type": "geoip", "database": str(databases["geo"])}},
        slots=slot(({"company.industry": "saas"}, "v1", "<p>{{ company.name }}</p>")))
    site = Site(config)
    try:
        for consent in (False, True):
            http = site.client(SF, consent)
            assert site.hero(http) == "<p>Acme Cloud</p>"
            cookie = http.cookies.get("pmw_id")
            if consent:
                profile = site.app.core.codec.load(cookie)
                assert profile is not None and profile.user is None
                assert not {"saas", "Acme", "acme.example", "San Francisco", "CA"} & set(
                    json.dumps(profile.to_payload()).replace('"', " ").split())
            else:
                assert cookie is None
    finally:
        site.close()
    text = Path(config["sink"][len("jsonl:"):]).read_text("utf-8")
    assert "Acme" not in text and "saas" not in text and "San Francisco" not in text and SF not in text


# ---------------------------------------------------------------- the CRM


def crm_config(make_core_config: Any, server: CRMServer, **options: Any) -> dict[str, Any]:
    enricher = {"type": "http", "url": f"{server.base}/people/{{user}}", "timeout_ms": 1000,
                "open_s": 0.5, "failures": 2, **options}
    return make_core_config(
        enrichment={"crm": enricher},
        slots=slot(({"crm.stage": "opportunity"}, "sales", "<p>Talk to {{ crm.owner }}</p>"),
                   ({"not": {"crm.stage": "opportunity"}}, "not-sales", "<p>Not in sales</p>")))


def login(site: Site, http: TestClient, user: str) -> None:
    assert http.post(f"/login?user={user}", follow_redirects=False).status_code == 303


def test_identify_fetches_the_crm_at_once_and_the_next_page_uses_it(make_core_config: Any, crm: CRMServer,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN", "s3cret")
    site = Site(crm_config(make_core_config, crm, headers={"Authorization": "Bearer ${CRM_TOKEN}"}))
    crm.control(require_auth="Bearer s3cret")
    key = site.app.core.user_ids.hash("alice@example.com")
    crm.control(people={key: {"stage": "opportunity", "owner": "Dana", "ssn": {"nested": "dropped"}}})
    try:
        http = site.client(SF, consent=True)
        assert site.hero(http) == "<p>Not in sales</p>"  # known visitor, no user yet: crm fields are None
        assert crm.requests() == []
        login(site, http, "alice@example.com")
        wait_until(lambda: site.enricher("crm").counts["fetched"] == 1)  # asked after identify(), no page needed
        assert crm.requests() == [{"path": f"/people/{key}", "auth": "Bearer s3cret"}]
        assert site.hero(http) == "<p>Talk to Dana</p>"
        profile = site.app.core.codec.load(http.cookies.get("pmw_id"))
        assert profile is not None and profile.user == key  # the keyed hash, never the e-mail
        payload = json.dumps(profile.to_payload())
        assert "Dana" not in payload and "opportunity" not in payload and "alice" not in payload
        assert site.hero(http, "/pricing") == "<p>Talk to Dana</p>"
        assert len(crm.requests()) == 1  # cached
    finally:
        site.close()


def test_without_personalization_consent_the_crm_is_never_asked(make_core_config: Any, crm: CRMServer) -> None:
    site = Site(crm_config(make_core_config, crm))
    key = site.app.core.user_ids.hash("bob@example.com")
    crm.control(people={key: {"stage": "opportunity", "owner": "Dana"}})
    try:
        http = site.client(SF, consent=False)
        login(site, http, "bob@example.com")
        # Unknown without consent: neither the rule nor its negation fires.
        assert site.hero(http) == "<p>Default</p>"
        assert site.hero(http) == "<p>Default</p>"
        time.sleep(0.3)
        assert crm.requests() == []
    finally:
        site.close()


def test_a_miss_schedules_a_fetch_and_the_page_does_not_wait(make_core_config: Any, crm: CRMServer) -> None:
    site = Site(crm_config(make_core_config, crm, timeout_ms=10_000))
    key = site.app.core.user_ids.hash("carol@example.com")
    crm.control(people={key: {"stage": "opportunity", "owner": "Eve"}})
    try:
        http = site.client(SF, consent=True)
        login(site, http, "carol@example.com")
        wait_until(lambda: site.enricher("crm").counts["fetched"] == 1)
        site.enricher("crm")._found.clear()  # the cache forgot her (expiry, another worker)
        crm.control(delay=3)
        assert site.hero(http) == "<p>Not in sales</p>"  # served from what is cached: nothing
        # The CRM got the request and is still sitting on it while the page has been served.
        wait_until(lambda: len(crm.requests()) == 2)
        assert site.enricher("crm").counts["fetched"] == 1
        assert site.hero(http) == "<p>Not in sales</p>"  # still pending: not asked twice
        wait_until(lambda: site.enricher("crm").counts["fetched"] == 2)
        assert len(crm.requests()) == 2
        assert site.hero(http) == "<p>Talk to Eve</p>"
    finally:
        site.close()


def test_errors_and_an_outage_open_the_circuit_and_it_closes_again(make_core_config: Any, crm: CRMServer) -> None:
    site = Site(crm_config(make_core_config, crm, timeout_ms=300))
    users = [f"user{i}@example.com" for i in range(6)]
    keys = [site.app.core.user_ids.hash(u) for u in users]
    crm.control(people={k: {"stage": "opportunity", "owner": "Finn"} for k in keys})
    enricher = None
    try:
        crm.control(status=500)
        clients = [site.client(SF, consent=True) for _ in users]
        login(site, clients[0], users[0])
        enricher = site.enricher("crm")
        wait_until(lambda: enricher.counts["failed"] == 1)
        assert site.hero(clients[0]) == "<p>Not in sales</p>"  # a 500 is not cached: asked again
        wait_until(lambda: enricher.counts["failed"] == 2)
        crm.stop()  # and now the CRM is gone: the circuit is already open
        for http, user in zip(clients[1:], users[1:], strict=True):
            login(site, http, user)
            assert site.hero(http) == "<p>Not in sales</p>"
        assert enricher.counts["skipped_open"] >= 5 and enricher.counts["failed"] == 2
        time.sleep(0.6)  # open_s
        assert site.hero(clients[1]) == "<p>Not in sales</p>"  # one try: refused connection
        wait_until(lambda: enricher.counts["failed"] == 3)
        crm.start()
        crm.control(people={k: {"stage": "opportunity", "owner": "Finn"} for k in keys})
        time.sleep(0.6)
        assert site.hero(clients[1]) == "<p>Not in sales</p>"
        wait_until(lambda: enricher.counts["fetched"] == 1)
        assert site.hero(clients[1]) == "<p>Talk to Finn</p>"
    finally:
        site.close()


def test_unknown_people_are_remembered_for_miss_ttl_and_answers_expire(make_core_config: Any,
                                                                        crm: CRMServer) -> None:
    site = Site(crm_config(make_core_config, crm, ttl_s=0.5, miss_ttl_s=0.5, fields=["stage", "owner"]))
    key = site.app.core.user_ids.hash("dan@example.com")
    try:
        http = site.client(SF, consent=True)
        login(site, http, "dan@example.com")
        enricher = site.enricher("crm")
        wait_until(lambda: enricher.counts["unknown"] == 1)
        assert site.hero(http) == "<p>Not in sales</p>"
        assert len(crm.requests()) == 1  # a 404 is an answer too
        crm.control(people={key: {"stage": "opportunity", "owner": "Gil", "secret": "x"}})
        time.sleep(0.6)
        site.hero(http)
        wait_until(lambda: enricher.counts["fetched"] == 1)
        assert site.hero(http) == "<p>Talk to Gil</p>"
        assert enricher._found[key] == {"stage": "opportunity", "owner": "Gil"}  # fields: keeps only those
        crm.control(people={key: {"stage": "customer", "owner": "Gil"}})
        time.sleep(0.6)
        site.hero(http)
        wait_until(lambda: enricher.counts["fetched"] == 2)
        assert site.hero(http) == "<p>Not in sales</p>"
    finally:
        site.close()


# ---------------------------------------------------------------- plug-ins and config


def test_plugins_by_python_name_and_entry_point(make_core_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_core_config(enrichment={"weather": {"type": "python:enricher_plugins:Weather", "sky": "grey"}},
                              slots=slot(({"weather.sky": "grey"}, "grey", "<p>{{ weather.sky }}</p>")))
    site = Site(config)
    try:
        assert site.hero(site.client(NOWHERE)) == "<p>grey</p>"
    finally:
        site.close()

    class EntryPoint:
        name = "weather"

        def load(self) -> Any:
            from enricher_plugins import Weather
            return Weather

    monkeypatch.setattr(registry.ENRICHERS, "entry_points", {"weather": EntryPoint()})
    monkeypatch.delitem(registry.ENRICHERS.registered, "weather", raising=False)
    site = Site(make_core_config(enrichment={"weather": {"type": "weather"}},
                                 slots=slot(({"weather.sky": "sunny"}, "sun", "<p>sun</p>"))))
    try:
        assert site.hero(site.client(NOWHERE)) == "<p>sun</p>"
    finally:
        site.close()


@pytest.mark.parametrize("enrichment, slots, message", [
    ({"geo": {"type": "geoip", "database": "missing.mmdb"}}, {}, "enrichment.geo.database: no database file"),
    ({"geo": {"type": "nope"}}, {}, "unknown enricher type 'nope'"),
    ({"geo": {"type": "geoip"}}, {}, "enrichment.geo.database: Field required"),
    ({"path": {"type": "geoip", "database": "x"}}, {}, "is taken by a condition field"),
    ({"crm": {"type": "http", "url": "http://crm.test/people"}}, {}, "exactly one of {user} or {account}"),
    ({"crm": {"type": "http", "url": "ftp://crm.test/{user}"}}, {}, "http:// or https://"),
    ({"crm": {"type": "http", "url": "http://crm.test/{user}", "timeout": 3}}, {}, "enrichment.crm.timeout: Extra"),
    ({"crm": {"type": "http", "url": "http://crm.test/{user}", "headers": {"X": "a\nb"}}}, {}, "CR, LF"),
    ({"crm": {"type": "http", "url": "http://crm.test/{user}"}}, slot(({"crn.stage": "x"}, "v", "t")),
     "unknown field 'crn.stage'"),
    ({"crm": {"type": "http", "url": "http://crm.test/{user}"}}, slot(({"crm.size": {"gte": "big"}}, "v", "t")),
     "'gte' takes a number"),
])
def test_bad_enrichment_config_names_the_key(make_core_config: Any, enrichment: Any, slots: Any,
                                             message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(make_core_config(enrichment=enrichment, slots=slots))
    assert message in str(caught.value)


def test_bad_ranges_and_databases_are_refused_with_their_lines(make_core_config: Any, tmp_path: Path) -> None:
    overlapping = tmp_path / "overlap.csv"
    overlapping.write_text("network,name\n10.0.0.0/8,A\n10.1.0.0/16,B\n", "utf-8")
    broken = tmp_path / "broken.mmdb"
    broken.write_bytes(b"not a database")
    bad_row = tmp_path / "bad.csv"
    bad_row.write_text("start_ip,end_ip,name\n10.0.0.9,10.0.0.1,A\n", "utf-8")
    for path, message in ((overlapping, "ranges of lines 2 and 3 overlap"), (broken, "is not a MaxMind DB file"),
                          (bad_row, "bad.csv line 2")):
        with pytest.raises(ConfigError, match=message):
            load_config(make_core_config(enrichment={"company": {"type": "company", "database": str(path)}}))


def test_check_command_reports_enrichment_problems_with_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              databases: dict[str, Path]) -> None:
    good = {"secret_keys": ["k" * 32], "sink": "jsonl:t.jsonl",
            "enrichment": {"geo": {"type": "geoip", "database": str(databases["geo"])},
                           "crm": {"type": "http", "url": "https://crm.test/people/{user}",
                                   "headers": {"Authorization": "Bearer ${PMW_TEST_CRM_TOKEN}"}}},
            "slots": slot(({"geo.region": "CA"}, "ca", "<p>CA</p>"))}
    path = tmp_path / "personalize.yaml"
    path.write_text(yaml.safe_dump(good), "utf-8")
    run = [sys.executable, "-m", "personalize_mw.cli", "check", str(path)]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[1])}
    result = subprocess.run(run, capture_output=True, text=True, env=env)
    assert result.returncode == 1 and "environment variable PMW_TEST_CRM_TOKEN is not set" in result.stderr
    result = subprocess.run(run, capture_output=True, text=True, env={**env, "PMW_TEST_CRM_TOKEN": "t"})
    assert result.returncode == 0, result.stderr
    bad = dict(good, enrichment={"geo": {"type": "geoip", "database": "nope.mmdb"}},
               slots=slot(({"geo.regoin": "CA"}, "ca", "<p>CA</p>")))
    path.write_text(yaml.safe_dump(bad), "utf-8")
    result = subprocess.run(run, capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert "enrichment.geo.database: no database file" in result.stderr
    assert "Traceback" not in result.stderr


def test_env_is_read_only_in_enrichment_addresses_and_credentials(make_core_config: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PMW_TEST_SKY", "leaked")
    config = load_config(make_core_config(enrichment={
        "crm": {"type": "http", "url": "https://crm.test/people/{user}?k=${PMW_TEST_SKY}"},
        "weather": {"type": "python:enricher_plugins:Weather", "sky": "${PMW_TEST_SKY}"}}))
    assert config.enrichment["crm"].model_extra == {"url": "https://crm.test/people/{user}?k=leaked"}
    assert config.enrichment["weather"].model_extra == {"sky": "${PMW_TEST_SKY}"}


def test_without_enrichment_nothing_is_built(make_core_config: Any) -> None:
    site = Site(make_core_config(slots=slot(({"country": "US"}, "us", "<p>US</p>"))))
    assert site.app.core.enrichment is None
    site.close()
    # A fresh interpreter: without enrichment: no enricher module, no MMDB reader is imported.
    probe = ("import sys; from personalize_mw.config import load_config; from personalize_mw.rules.engine import "
             "compiled_slots; compiled_slots(load_config({'secret_keys': ['k' * 32]})); "
             "print(sorted(m for m in sys.modules if m.startswith(('personalize_mw.enrich.h', "
             "'personalize_mw.enrich.g', 'personalize_mw.enrich.c', 'maxminddb'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(__file__).parents[1])}).stdout
    assert out.strip() == "[]"


def test_the_example_sites_commented_enrichment_block_works_uncommented(tmp_path: Path,
                                                                         databases: dict[str, Path],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).parents[1]
    text = (root / "example_site" / "personalize.yaml").read_text("utf-8")
    lines = text.splitlines()
    start = lines.index("# enrichment:")
    end = lines.index("# and then, for example, under segments:")
    block = "\n".join(line[2:] for line in lines[start:end] if line.startswith("# "))
    segments = "\n".join(line[2:] for line in lines[end + 1:end + 3])
    enrichment = yaml.safe_load(block)["enrichment"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "companies.csv").write_text(
        "network,name,domain,industry,size\n198.51.100.0/24,Acme Cloud,acme.example,saas,450\n", "utf-8")
    (tmp_path / "data" / "GeoLite2-City.mmdb").write_bytes(databases["geo"].read_bytes())
    monkeypatch.setenv("CRM_TOKEN", "t")
    config = yaml.safe_load(text)
    config.update(enrichment=enrichment, base_dir=str(tmp_path), sink=f"jsonl:{tmp_path}/t.jsonl")
    config["segments"].update(yaml.safe_load(segments.replace("  ", "", 1).replace("\n  ", "\n")))
    config["slots"] = slot(("target_account", "abm", "<p>{{ company.name }}</p>"),
                           ("californians", "ca", "<p>{{ geo.city }}</p>"))
    site = Site(config)
    try:
        assert site.hero(site.client(SF)) == "<p>Acme Cloud</p>"
        assert site.hero(site.client(MONTREAL)) == "<p>Default</p>"
    finally:
        site.close()


def test_flask_reads_the_client_address_from_the_environ(make_core_config: Any, databases: dict[str, Path]) -> None:
    import flask

    from personalize_mw import PersonalizeWSGIMiddleware

    app = flask.Flask(__name__)
    app.add_url_rule("/", "page", lambda: PAGE)
    config = make_core_config(enrichment={"geo": {"type": "geoip", "database": str(databases["geo"])}},
                              slots=slot(({"geo.region": "CA"}, "ca", "<p>Hi {{ geo.city }}</p>")))
    app.wsgi_app = PersonalizeWSGIMiddleware(app.wsgi_app, config=config)  # type: ignore[method-assign]
    try:
        with app.test_client() as http:
            assert "<p>Hi San Francisco</p>" in http.get("/", environ_base={"REMOTE_ADDR": SF}).text
            assert "<p>Default</p>" in http.get("/", environ_base={"REMOTE_ADDR": BERLIN}).text
    finally:
        app.wsgi_app.core.queue.close()  # type: ignore[attr-defined]
        app.wsgi_app.core.enrichment.close()  # type: ignore[attr-defined]
