"""Accounts (buying groups): identify(..., account=...) across devices, unit: account experiments,
and attribution / lift per account, through the real middleware and the real CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CORE_SECRET
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import personalize_mw
from personalize_mw import PersonalizeMiddleware
from personalize_mw.errors import ConfigError

CONSENT = "analytics=1&personalization=1&advertising=0"
FIRST = "first"
PAGE = "<html><body><!-- personalize:price -->List price<!-- /personalize:price --></body></html>"
SPLIT = {"price": {"variants": [{"variant": "a", "template": "Price A"}, {"variant": "b", "template": "Price B"}],
                   "unit": "account", "experiment": "pricing-2027"}}


def expected_hash(value: str) -> str:
    """identify()'s documented construction, computed here independently."""
    key = hmac.new(CORE_SECRET.encode(), b"personalize_mw.identity.v1", hashlib.sha256).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


class Site:
    def __init__(self, tmp_path: Path, slots: dict[str, Any] | None = None) -> None:
        self.sink = tmp_path / "tp.jsonl"
        config = {"secret_keys": [CORE_SECRET], "sink": f"jsonl:{self.sink}", "slots": slots or {},
                  "goals": {"deal": {"path": "/deal"}},
                  "delivery": {"flush_interval_s": 0.05, "shutdown_timeout_s": 5}}
        self.app = PersonalizeMiddleware(Starlette(routes=[Route("/{rest:path}", self.page)]), config=config)
        self.calls: list[bool] = []

    async def page(self, request: Request) -> HTMLResponse:
        user, account = request.query_params.get("user"), request.query_params.get("account")
        if user:
            self.calls.append(personalize_mw.identify(request, user, account=account))
        return HTMLResponse(PAGE)

    def device(self, consent: str | None = CONSENT) -> TestClient:
        client = TestClient(self.app)
        if consent:
            client.cookies.set("pmw_consent", consent)
        return client

    def records(self) -> list[dict[str, Any]]:
        assert personalize_mw.flush(5.0)
        return [json.loads(line) for line in self.sink.read_text("utf-8").splitlines()] if self.sink.exists() else []


def shown(client: TestClient, path: str = "/") -> str:
    text = client.get(path).text
    return text.split("<!-- personalize:price -->")[1].split("<!--")[0]


def test_identify_links_people_on_two_devices_to_one_hashed_account(tmp_path: Path) -> None:
    site = Site(tmp_path)
    with site.device() as laptop, site.device() as phone, site.device(consent=None) as stranger:
        laptop.get("/?user=ada@acme.example&account=acme-42")
        phone.get("/?user=bob@acme.example&account=acme-42")
        stranger.get("/?user=eve@acme.example&account=acme-42")  # no consent: no identify record
    assert site.calls == [True, True, False]
    identifies = [r for r in site.records() if r["type"] == "identify"]
    assert len(identifies) == 2 and len({r["visitor"] for r in identifies}) == 2
    assert {r["account"] for r in identifies} == {expected_hash("acme-42")}
    assert not any("acme-42" in json.dumps(r) for r in site.records())  # hashed, like the user id


def test_a_bad_account_is_the_views_bug() -> None:
    with pytest.raises(ValueError, match="account must have 1 to 256 characters"):
        personalize_mw.identify({}, "ada", account="")


def test_unit_account_shows_a_buying_group_one_arm_on_every_device(tmp_path: Path) -> None:
    site = Site(tmp_path, SPLIT)
    arms: dict[str, set[str]] = {}
    with site.device() as before:
        assert shown(before) == "List price"  # not identified yet: outside the experiment, the default
    for n in range(12):
        account = f"account-{n}"
        for person in range(2):
            with site.device() as device:
                device.get(f"/?user=p{person}@{account}&account={account}")  # the login page itself
                arms.setdefault(account, set()).add(shown(device))  # every later page: the account's arm
                arms[account].add(shown(device, "/pricing"))
    assert all(len(seen) == 1 for seen in arms.values()), arms  # colleagues see the same price
    assert {next(iter(seen)) for seen in arms.values()} == {"Price A", "Price B"}  # accounts do differ
    exposures = [r for r in site.records() if r["type"] == "exposure"]
    assert exposures[0]["arm"] == "unenrolled" and exposures[0]["variant"] is None
    assert {r["experiment"] for r in exposures} == {"pricing-2027"}


def test_unit_account_with_a_per_visitor_learner_is_refused(tmp_path: Path) -> None:
    slots = {"price": {"strategy": "bandit", "variants": SPLIT["price"]["variants"], "unit": "account",
                       "bandit": {"goal": "deal"}}}
    with pytest.raises(ConfigError, match="unit: account assigns split variants"):
        personalize_mw.load_config({"secret_keys": [CORE_SECRET], "slots": slots, "goals": {"deal": {"path": "/d"}}})


def cli(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "personalize_mw.cli", *args, "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 2), done.stderr
    return json.loads(done.stdout)


def test_attribution_and_lift_per_account_merge_its_people_and_devices(tmp_path: Path) -> None:
    site = Site(tmp_path, {"price": {"rules": [{"if": {"path_prefix": "/"}, "variant": "a", "template": "A"}],
                           "holdout": 0.0001, "unit": "account"}})
    with site.device() as laptop, site.device() as phone:
        laptop.get("/?utm_source=newsletter&utm_medium=email")  # Ada reads the newsletter on her laptop
        laptop.get("/?user=ada@acme.example&account=acme")
        phone.get("/?user=bob@acme.example&account=acme")  # Bob, her colleague, on his phone
        phone.get("/deal")  # ...closes the deal
    sink = str(site.sink)
    per_visitor = cli("attribution", sink, "--by", "channel", "--model", FIRST)
    per_account = cli("attribution", sink, "--by", "channel", "--model", FIRST, "--unit", "account")
    assert (per_visitor["unit"], per_account["unit"]) == ("visitor", "account")

    def credit(report: dict[str, Any]) -> dict[str, float]:
        return {touch: cell["conversions"] for touch, cell in report["models"][FIRST].items()}
    assert credit(per_visitor).get("email", 0.0) == 0.0  # Bob's own journey never saw the newsletter
    assert credit(per_account)["email"] == pytest.approx(1.0)  # the account's journey did
    lift_visitor = cli("lift", sink)
    lift_account = cli("lift", sink, "--unit", "account")
    treated = {(v["slot"], v["variant"]): v["n_treatment"] for v in lift_account["variants"]}
    assert treated == {("price", "a"): 1}  # one account, however many people and devices
    assert {(v["slot"], v["variant"]): v["n_treatment"] for v in lift_visitor["variants"]} == {("price", "a"): 2}


def test_the_cookie_keeps_the_account_and_refuses_a_malformed_one() -> None:
    from personalize_mw.core.visitor import Profile

    kept = Profile("v1", account=expected_hash("acme"))
    assert Profile.from_payload(kept.to_payload()) == kept
    assert "ac" not in Profile("v2").to_payload()  # nothing added for a visitor without an account
    for bad in (5, "", "x" * 257, ["acme"]):
        assert Profile.from_payload({**Profile("v3").to_payload(), "ac": bad}) is None


def test_a_deal_imported_from_the_crm_closes_the_accounts_journey(tmp_path: Path) -> None:
    import csv
    import time

    site = Site(tmp_path)
    config = tmp_path / "personalize.yaml"
    config.write_text(f'secret_keys: ["{CORE_SECRET}"]\nsink: jsonl:{site.sink}\n'
                      "goals: {deal: {path: /deal}}\n", encoding="utf-8")
    with site.device() as laptop, site.device() as phone:
        laptop.get("/?utm_source=newsletter&utm_medium=email")  # Ada reads the newsletter
        laptop.get("/?user=ada@acme.example&account=acme")
        phone.get("/?user=bob@acme.example&account=acme")  # Bob browses; the deal closes in the CRM
    site.records()
    deals = tmp_path / "deals.csv"
    with deals.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["email", "amount", "closed_at"])
        writer.writeheader()
        writer.writerow({"email": "bob@acme.example", "amount": "12000",
                         "closed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))})
    done = subprocess.run([sys.executable, "-m", "personalize_mw.cli", "import-conversions", str(deals),
                           "--user-column", "email", "--value-column", "amount", "--date-column", "closed_at",
                           "--goal", "deal", "--config", str(config)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    def credit(*more: str) -> dict[str, float]:
        report = cli("attribution", str(site.sink), "--by", "channel", "--model", FIRST, "--value", *more)
        return {touch: cell["value"] for touch, cell in report["models"][FIRST].items()}
    assert credit().get("email", 0.0) == 0.0  # Bob's journey alone
    assert credit("--unit", "account")["email"] == pytest.approx(12000.0)  # the buying group's journey
