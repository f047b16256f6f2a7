"""personalize-mw forget / export / prune end to end: records made by the real middleware,
delivered to jsonl, sqlite, a real PostgreSQL, a real Redis and a collector process, then
the commands run as an operator runs them (a subprocess with a YAML file)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import personalize_mw
from personalize_mw import PersonalizeMiddleware
from personalize_mw.config import load_config
from personalize_mw.touchpoints.jsonl import JsonlSink
from personalize_mw.touchpoints.record import SCHEMA_VERSION, finalize, new_record
from personalize_mw.touchpoints.sqlite import SqliteSink
from servers import (  # noqa: F401  (fixtures)
    CollectorServer, PostgresServer, RedisServer, collector, collector_session, pg, postgres, redis_server,
    redis_session,
)

SECRET = "privacy-e2e-secret-0123456789"
CONSENT = "analytics=1&personalization=1&advertising=0"
UTM = dict.fromkeys(("source", "medium", "campaign", "term", "content"))


def hashed(user: str) -> str:
    key = hmac.new(SECRET.encode(), b"personalize_mw.identity.v1", hashlib.sha256).digest()
    return hmac.new(key, user.encode(), hashlib.sha256).hexdigest()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "personalize_mw.cli", *args], capture_output=True, text=True,
                          timeout=120)


class Deployment:
    """A YAML config with the given sinks, and the site that writes to them."""

    def __init__(self, tmp_path: Path, sinks: list[str]) -> None:
        self.dir = tmp_path
        self.config_path = tmp_path / "personalize.yaml"
        self.config_path.write_text(yaml.safe_dump({
            "secret_keys": [SECRET], "sink": sinks,
            "delivery": {"flush_interval_s": 0.05, "spool_dir": "spool"},
            "goals": {"signup": {"path": "/welcome"}},
        }))
        self.jsonl = tmp_path / "tp.jsonl"
        self.sqlite = tmp_path / "tp.db"

    def site(self) -> PersonalizeMiddleware:
        async def page(request: Request) -> Response:
            return HTMLResponse("<p>hi</p>")

        async def login(request: Request) -> Response:
            assert personalize_mw.identify(request, request.query_params["user"])
            personalize_mw.track(request, "logged_in", props={"method": "password"})
            return RedirectResponse("/", status_code=303)

        app = Starlette(routes=[Route("/", page), Route("/login", login, methods=["POST"])])
        return PersonalizeMiddleware(app, config=str(self.config_path))

    def visit(self, devices: dict[str, str | None]) -> dict[str, str]:
        """Each device browses, and logs in as its user if it has one; {device: visitor id}."""
        app = self.site()
        ids = {}
        for device, user in devices.items():
            http = TestClient(app, follow_redirects=False)
            http.cookies.set("pmw_consent", CONSENT)
            first = http.get("/")
            http.cookies.set("pmw_id", first.cookies["pmw_id"])
            ids[device] = app.core.codec.load(first.cookies["pmw_id"]).visitor_id  # type: ignore[union-attr]
            if user:
                http.post(f"/login?user={user}")
        TestClient(app).get("/")  # an anonymous visit: no consent, no id
        app.core.queue.close()
        return ids

    def jsonl_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for path in JsonlSink(self.jsonl).files()
                for line in path.read_text("utf-8").splitlines()]

    def sqlite_records(self) -> list[dict[str, Any]]:
        with sqlite3.connect(self.sqlite) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute("SELECT * FROM touchpoints")]


@pytest.fixture
def full(tmp_path: Path, pg: PostgresServer, redis_server: RedisServer,
         collector: CollectorServer) -> tuple[Deployment, PostgresServer, RedisServer, CollectorServer, str, str]:
    table = f"privacy_{uuid.uuid4().hex[:10]}"
    stream = f"pmw-{uuid.uuid4().hex[:8]}"
    sinks = ["jsonl:tp.jsonl", "sqlite:tp.db", f"{pg.url}?table={table}", f"{redis_server.url}/{stream}",
             collector.url]
    return Deployment(tmp_path, sinks), pg, redis_server, collector, table, stream


def visitors_in(records: list[dict[str, Any]]) -> list[str | None]:
    return sorted((r["visitor"] or "-") for r in records)


def test_export_then_forget_on_every_sink(full: Any) -> None:
    deployment, server, redis, coll, table, stream = full
    ids = deployment.visit({"laptop": "alice", "phone": "alice", "desk": "bob", "kiosk": None})
    alice = {ids["laptop"], ids["phone"]}
    per_device = sum(1 for r in deployment.jsonl_records() if r["visitor"] == ids["laptop"])
    assert per_device == 3  # pageview, identify, event
    before_pg = server.query(f"SELECT count(*) FROM {table}")[0][0]
    assert before_pg == len(deployment.jsonl_records()) == len(deployment.sqlite_records()) == 4 * 3 - 2 + 1

    exported = cli("export", "alice", "--config", str(deployment.config_path))
    assert exported.returncode == 0, exported.stderr
    answer = json.loads(exported.stdout)
    assert answer["id"] == "alice" and answer["user_ids"] == [hashed("alice")]
    assert set(answer["visitor_ids"]) == alice
    held = answer["records"]
    assert set(held) == {"jsonl:tp.jsonl", "sqlite:tp.db", f"{server.url}?table={table}"}
    for records in held.values():
        assert len(records) == 2 * per_device and {r["visitor"] for r in records} == alice
    assert held["jsonl:tp.jsonl"] == held["sqlite:tp.db"]  # the same records, read back from either
    assert answer["forwarded_to"] == [f"{redis.url}/{stream}", coll.url]
    assert "alice" not in json.dumps(answer["records"])  # only the hash was ever stored

    forgot = cli("forget", "alice", "--config", str(deployment.config_path))
    assert forgot.returncode == 0, forgot.stderr
    assert "identify links followed to 2 visitor id(s) and 1 user id(s)" in forgot.stdout
    assert f"jsonl:tp.jsonl: {2 * per_device} record(s) deleted" in forgot.stdout

    bob_and_anonymous = sorted([ids["desk"]] * per_device + [ids["kiosk"]] * 1 + ["-"])
    assert visitors_in(deployment.jsonl_records()) == bob_and_anonymous
    assert visitors_in(deployment.sqlite_records()) == bob_and_anonymous
    assert sorted(v or "-" for (v,) in server.query(f"SELECT visitor FROM {table}")) == bob_and_anonymous

    streamed = [json.loads(fields["record"]) for _, fields in redis.client().xrange(stream)]
    suppressed = [r for r in streamed if r["type"] == "suppress"]
    assert {r["visitor"] for r in suppressed if r["visitor"]} == alice
    assert {r["user"] for r in suppressed if r["user"]} == {hashed("alice")}
    assert all(r["schema"] == SCHEMA_VERSION and r["id"] for r in suppressed)
    messages = [m for m in coll.messages() if m.get("event") == "suppress"]
    assert sorted(m["messageId"] for m in messages) == sorted(r["id"] for r in suppressed)
    assert b'"alice"' not in json.dumps(coll.batches()).encode()

    again = json.loads(cli("export", "alice", "--config", str(deployment.config_path)).stdout)
    assert all(records == [] for records in again["records"].values())


def test_forget_by_a_visitor_id_follows_the_login_to_the_other_device(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, ["jsonl:tp.jsonl", "sqlite:tp.db"])
    ids = deployment.visit({"laptop": "alice", "phone": "alice", "desk": "bob", "tablet": None})
    forgot = cli("forget", ids["phone"], "--config", str(deployment.config_path))
    assert forgot.returncode == 0, forgot.stderr
    assert visitors_in(deployment.jsonl_records()) == sorted([ids["desk"]] * 3 + [ids["tablet"], "-"])
    assert visitors_in(deployment.sqlite_records()) == visitors_in(deployment.jsonl_records())


def test_an_unknown_id_deletes_nothing(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, ["jsonl:tp.jsonl"])
    deployment.visit({"desk": "bob"})
    before = deployment.jsonl.read_bytes()
    forgot = cli("forget", "carol", "--config", str(deployment.config_path))
    assert forgot.returncode == 0 and "0 record(s) deleted" in forgot.stdout
    assert deployment.jsonl.read_bytes() == before


def old_and_new(t_old: float, t_new: float) -> list[dict[str, Any]]:
    make = lambda t, v: finalize(new_record("pageview", t, visitor=v, session=None, path="/", referrer_host=None,  # noqa: E731
                                            channel="direct", utm=UTM, consent={"analytics": True}))
    return [make(t_old, "old-1"), make(t_old + 60, "old-2"), make(t_new, "new-1")]


def test_prune_keeps_retention_days(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, ["jsonl:tp.jsonl?rotate=daily", "sqlite:tp.db"])
    now = time.time()
    records = old_and_new(now - 761 * 86400, now - 759 * 86400)
    jsonl = JsonlSink(tmp_path / "tp.jsonl", rotate="daily")
    jsonl.write(records)
    jsonl.close()
    sqlite = SqliteSink(deployment.sqlite)
    sqlite.write(records)
    sqlite.close()
    assert len(jsonl.files()) == 2  # one file per day

    pruned = cli("prune", "--config", str(deployment.config_path))
    assert pruned.returncode == 0, pruned.stderr
    assert "jsonl:tp.jsonl?rotate=daily: 2 record(s) older than 760 days deleted" in pruned.stdout
    assert [json.loads(line)["visitor"] for path in jsonl.files() for line in path.read_text().splitlines()] \
        == ["new-1"]
    assert len(jsonl.files()) == 1  # the old day's file is gone, not left empty
    assert [r["visitor"] for r in deployment.sqlite_records()] == ["new-1"]

    assert cli("prune", "--days", "1", "--config", str(deployment.config_path)).returncode == 0
    assert deployment.sqlite_records() == [] and jsonl.files() == []


def test_retention_days_is_configurable(tmp_path: Path, make_core_config: Any) -> None:
    assert load_config(make_core_config()).retention_days == 760
    assert load_config(make_core_config(retention_days=30)).retention_days == 30


def test_dead_letters_are_forgotten_and_spooled_records_reported(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, ["jsonl:tp.jsonl"])
    ids = deployment.visit({"laptop": "alice"})
    laptop = ids["laptop"]
    spool = tmp_path / "spool"
    spool.mkdir()
    mine = [r for r in deployment.jsonl_records() if r["visitor"] == laptop]
    (spool / "jsonl-abc.dead.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mine[:2]))
    (spool / "jsonl-abc.123.0.spool").write_text(json.dumps(mine[2]) + "\n")

    exported = json.loads(cli("export", "alice", "--config", str(deployment.config_path)).stdout)
    assert len(exported["records"]["dead letters"]) == 2 and len(exported["records"]["spool"]) == 1

    forgot = cli("forget", "alice", "--config", str(deployment.config_path))
    assert forgot.returncode == 2  # done where possible, but one record waits in the spool
    assert "dead letters: 2 record(s) deleted" in forgot.stdout
    assert "1 record(s) of this person still wait in the spool" in forgot.stderr
    assert not (spool / "jsonl-abc.dead.jsonl").exists()
    assert [r["visitor"] for r in deployment.jsonl_records()] == [None]  # the anonymous visit


def test_export_to_a_file_is_private(tmp_path: Path) -> None:
    deployment = Deployment(tmp_path, ["jsonl:tp.jsonl"])
    deployment.visit({"laptop": "alice"})
    target = tmp_path / "alice.json"
    done = cli("export", "alice", "--config", str(deployment.config_path), "--output", str(target))
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len(json.loads(target.read_text())["records"]["jsonl:tp.jsonl"]) == 3


def test_a_bad_config_is_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "personalize.yaml"
    path.write_text("secret_keys: [short]\n")
    done = cli("forget", "x", "--config", str(path))
    assert done.returncode == 1 and "secret_keys" in done.stderr


def test_a_sink_that_is_down_fails_alone_and_forget_can_be_run_again(tmp_path: Path, pg: PostgresServer) -> None:
    table = f"privacy_{uuid.uuid4().hex[:10]}"
    deployment = Deployment(tmp_path, ["jsonl:tp.jsonl", f"{pg.url}?table={table}"])
    ids = deployment.visit({"laptop": "alice", "desk": "bob"})
    pg.stop()
    try:
        export = cli("export", "alice", "--config", str(deployment.config_path))
        assert export.returncode == 1 and "this export is incomplete" in export.stderr
        assert list(json.loads(export.stdout)["unreadable"]) == [f"{pg.url}?table={table}"]
        forgot = cli("forget", "alice", "--config", str(deployment.config_path))
        assert forgot.returncode == 1
        assert f"{pg.url}?table={table}: FAILED" in forgot.stderr
        assert "jsonl:tp.jsonl: 3 record(s) deleted" in forgot.stdout  # the others are still done
        assert ids["laptop"] not in visitors_in(deployment.jsonl_records())
    finally:
        pg.start()
    assert ids["laptop"] in {v for (v,) in pg.query(f"SELECT visitor FROM {table}")}
    again = cli("forget", "alice", "--config", str(deployment.config_path))
    assert again.returncode == 0, again.stderr
    assert ids["laptop"] not in {v for (v,) in pg.query(f"SELECT visitor FROM {table}")}
    assert ids["desk"] in {v for (v,) in pg.query(f"SELECT visitor FROM {table}")}


PYTHON_SINKS = '''
from personalize_mw.privacy import Person

HELD = []
RECEIVED = []


class Warehouse:
    """A sink of the site's own that holds records and implements the privacy interface."""

    def write(self, records):
        HELD.extend(records)

    def close(self):
        pass

    def links(self, person):
        return {(r["visitor"], r["user"]) for r in HELD if r["type"] == "identify" and person.owns(r)}

    def export(self, person):
        return [r for r in HELD if person.owns(r)]

    def forget(self, person):
        before = len(HELD)
        HELD[:] = [r for r in HELD if not person.owns(r)]
        return before - len(HELD)

    def prune(self, before):
        return 0


def forward(records):
    RECEIVED.extend(records)
'''


def test_python_sinks_forget_themselves_or_get_suppress_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 make_core_config: Any) -> None:
    from personalize_mw.privacy import forget_person

    (tmp_path / "site_sinks.py").write_text(PYTHON_SINKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import site_sinks  # type: ignore[import-not-found]

    config = load_config(make_core_config(secret_keys=[SECRET], sink=["python:site_sinks:Warehouse",
                                                                      "python:site_sinks:forward"]))
    make = lambda kind, visitor, user=None: finalize(new_record(  # noqa: E731
        kind, time.time(), visitor=visitor, session=None, path="/", referrer_host=None, channel="direct",
        utm=UTM, consent={}, user=user))
    site_sinks.HELD.extend([make("pageview", "dev-A"), make("identify", "dev-A", hashed("alice")),
                            make("pageview", "dev-C")])
    report = forget_person(config, "alice")
    assert report.complete and report.deleted["python:site_sinks:Warehouse"] == 2
    assert [r["visitor"] for r in site_sinks.HELD] == ["dev-C"]
    assert report.suppressed == {"python:site_sinks:forward": 2}
    assert {(r["type"], r["visitor"], r["user"]) for r in site_sinks.RECEIVED} == {
        ("suppress", "dev-A", None), ("suppress", None, hashed("alice"))}
