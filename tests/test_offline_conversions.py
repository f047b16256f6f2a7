"""personalize-mw import-conversions end to end: visits recorded by the real middleware into jsonl,
sqlite and a real PostgreSQL, deals closed 200 days later imported from a CSV (twice), then
attribution, lift, the report, export and forget run as an operator runs them."""

from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

import personalize_mw
from personalize_mw import PersonalizeMiddleware
from personalize_mw.analytics import open_source
from personalize_mw.analytics.lift import outcomes, outcomes_sql
from personalize_mw.analytics.source import build_journeys
from personalize_mw.config import load_config
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.offline.rows import Columns, InputError, read_rows
from personalize_mw.touchpoints.jsonl import JsonlSink
from servers import (  # noqa: F401  (fixtures)
    CollectorServer, PostgresServer, collector, collector_session, pg, postgres,
)

SECRET = "offline-e2e-secret-0123456789"
CONSENT = "analytics=1&personalization=1&advertising=0"
DAY = 86400.0
PAGE = "<h1>Acme</h1><!-- personalize:hero --><p>default</p><!-- /personalize:hero -->"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "personalize_mw.cli", *args], capture_output=True, text=True,
                          timeout=180)


class Site:
    """A YAML config with the given sinks; the site's clock is the test's."""

    def __init__(self, tmp_path: Path, sinks: list[str], **extra: Any) -> None:
        self.dir = tmp_path
        self.config_path = tmp_path / "personalize.yaml"
        self.config_path.write_text(yaml.safe_dump({
            "secret_keys": [SECRET], "sink": sinks, "delivery": {"flush_interval_s": 0.05, "spool_dir": "spool"},
            "goals": {"signup": {"path": "/welcome"}},
            "slots": {"hero": {"variants": [{"variant": "pricing", "template": "<p>See pricing</p>"}],
                               "holdout": 0.5, "experiment": "hero-exp"}},
            **extra,
        }))
        self.now = [time.time()]

    def visit(self, people: dict[str, list[str]], at: float) -> dict[str, list[str]]:
        """Each person browses on each of their devices and logs in there; {person: visitor ids}."""
        self.now[0] = at
        core = Personalizer(load_config(str(self.config_path)), clock=lambda: self.now[0])

        async def page(request: Request) -> Response:
            return HTMLResponse(PAGE)

        async def login(request: Request) -> Response:
            assert personalize_mw.identify(request, request.query_params["user"])
            return RedirectResponse("/", status_code=303)

        app = PersonalizeMiddleware(Starlette(routes=[Route("/", page), Route("/login", login, methods=["POST"])]),
                                    personalizer=core)
        ids: dict[str, list[str]] = {}
        for person, devices in people.items():
            for _ in devices:
                http = TestClient(app, follow_redirects=False)
                http.cookies.set("pmw_consent", CONSENT)
                first = http.get("/")
                http.cookies.set("pmw_id", first.cookies["pmw_id"])
                ids.setdefault(person, []).append(core.codec.load(first.cookies["pmw_id"]).visitor_id)  # type: ignore[union-attr]
                self.now[0] += 60
                http.post(f"/login?user={person}")
                self.now[0] += 60
        core.queue.close()
        return ids

    def import_(self, path: Path, *more: str) -> subprocess.CompletedProcess[str]:
        return cli("import-conversions", str(path), "--user-column", "email", "--value-column", "amount",
                   "--date-column", "closed_at", "--goal", "deal", "--config", str(self.config_path), *more)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=["email", "amount", "closed_at", "company"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def jsonl_records(site: Site) -> list[dict[str, Any]]:
    return [json.loads(line) for path in JsonlSink(site.dir / "tp.jsonl").files()
            for line in path.read_text("utf-8").splitlines()]


def sqlite_count(site: Site, kind: str) -> int:
    with sqlite3.connect(site.dir / "tp.db") as conn:
        return conn.execute("SELECT count(*) FROM touchpoints WHERE type = ?", (kind,)).fetchone()[0]


PEOPLE = {f"buyer{i}@example.com": ["laptop"] for i in range(24)} | {"multi@example.com": ["laptop", "phone"]}


@pytest.fixture
def deployment(tmp_path: Path, pg: PostgresServer) -> tuple[Site, str, dict[str, list[str]], float, Path]:
    """Visits 220 days ago on three sinks; a deal per person closed 200 days after them (CSV)."""
    table = f"offline_{uuid.uuid4().hex[:10]}"
    pg_url = f"{pg.url}?table={table}"
    site = Site(tmp_path, ["jsonl:tp.jsonl", "sqlite:tp.db", pg_url])
    visited = time.time() - 220 * DAY
    ids = site.visit(PEOPLE, visited)
    closed = visited + 200 * DAY
    deals = [{"email": person, "amount": 1000 + 100 * i, "closed_at": iso(closed + i * 60), "company": "Acme"}
             for i, person in enumerate(PEOPLE)]
    deals.append({"email": "never-visited@example.com", "amount": 99999, "closed_at": iso(closed), "company": "X"})
    return site, pg_url, ids, closed, write_csv(tmp_path / "deals.csv", deals)


def test_import_twice_adds_nothing_on_every_sink_and_the_user_is_hashed_as_identify_hashed_it(
        deployment: Any, pg: PostgresServer) -> None:
    site, pg_url, ids, _, deals = deployment
    table = pg_url.rsplit("=", 1)[1]
    first = site.import_(deals)
    assert first.returncode == 0, first.stderr
    assert f"{len(PEOPLE) + 1} row(s) read" in first.stdout
    assert "1 row(s) have no identify record linking the user to a visitor: skipped" in first.stdout
    for label in ("jsonl:tp.jsonl", "sqlite:tp.db"):
        assert f"{label}: {len(PEOPLE)} conversion(s) written, 0 held already" in first.stdout

    imported = [r for r in jsonl_records(site) if r["type"] == "conversion" and r["goal"] == "deal"]
    identified = {r["user"] for r in jsonl_records(site) if r["type"] == "identify"}
    assert len(imported) == len(PEOPLE)
    # identify() stored these hashes; the import made the same ones, and nothing else of the row
    assert {r["user"] for r in imported} == identified
    assert all(r["visitor"] is None and r["session"] is None and r["props"] is None for r in imported)
    assert not any("example.com" in json.dumps(r) or "Acme" in json.dumps(r) for r in imported)

    counts = (len(jsonl_records(site)), sqlite_count(site, "conversion"),
              pg.query(f"SELECT count(*) FROM {table} WHERE type = 'conversion'")[0][0])
    assert counts[1:] == (len(PEOPLE), len(PEOPLE))
    second = site.import_(deals)
    assert second.returncode == 0, second.stderr
    assert f"jsonl:tp.jsonl: 0 conversion(s) written, {len(PEOPLE)} held already" in second.stdout
    assert f"?table={table}: 0 conversion(s) written, {len(PEOPLE)} held already" in second.stdout
    assert (len(jsonl_records(site)), sqlite_count(site, "conversion"),
            pg.query(f"SELECT count(*) FROM {table} WHERE type = 'conversion'")[0][0]) == counts

    # The same deals through the SQL sinks' own guard: a sink that could not tell what it holds
    # (here, told nothing) still stores each id once.
    from personalize_mw.touchpoints.postgresql import PostgresSink
    from personalize_mw.touchpoints.sqlite import SqliteSink

    for sink in (SqliteSink(site.dir / "tp.db"), PostgresSink(pg_url)):
        sink.write([dict(r) for r in imported])
        sink.close()
    assert sqlite_count(site, "conversion") == len(PEOPLE)
    assert pg.query(f"SELECT count(*) FROM {table} WHERE type = 'conversion'")[0][0] == len(PEOPLE)


def test_a_deal_200_days_after_the_touches_is_credited_and_counted(deployment: Any) -> None:
    site, pg_url, ids, _, deals = deployment
    assert site.import_(deals).returncode == 0
    total = sum(1000 + 100 * i for i in range(len(PEOPLE)))
    for source in ("jsonl:tp.jsonl", "sqlite:tp.db", pg_url):
        where = source if source.startswith("postgresql") else source.replace(":", f":{site.dir}/", 1)
        year = cli("attribution", where, "--goal", "deal", "--lookback-days", "365", "--format", "json")
        assert year.returncode == 0, year.stderr
        answer = json.loads(year.stdout)
        # one journey per person: the two devices of multi@ are one person, their deal counted once
        assert answer["converting_journeys"] == len(PEOPLE) == answer["credited_conversions"]
        assert answer["credited_value"] == pytest.approx(total)
        assert answer["models"]["last"]["direct"]["value"] == pytest.approx(total)
        month = json.loads(cli("attribution", where, "--goal", "deal", "--format", "json").stdout)
        assert month["conversions_without_touch"] == len(PEOPLE) and month["credited_value"] == 0

        lift = cli("lift", where, "--goal", "deal", "--window-days", "365", "--format", "json", "--min-sample", "1")
        assert lift.returncode == 0, lift.stderr
        (row,) = json.loads(lift.stdout)["variants"]
        visitors = sum(len(v) for v in ids.values())
        assert row["n_treatment"] + row["n_holdout"] == visitors
        # every visitor's person closed a deal in the window: each converted (multi@ on both devices)
        assert row["conv_treatment"] + row["conv_holdout"] == visitors
        multi = 1000 + 100 * list(PEOPLE).index("multi@example.com")
        revenue = row["revenue_treatment"] * row["n_treatment"] + row["revenue_holdout"] * row["n_holdout"]
        assert revenue == pytest.approx(total + multi)
        short = json.loads(cli("lift", where, "--goal", "deal", "--format", "json").stdout)["variants"][0]
        assert short["conv_treatment"] + short["conv_holdout"] == 0


def test_the_report_shows_revenue_by_touch_and_by_variant(deployment: Any) -> None:
    site, _, _, _, deals = deployment
    assert site.import_(deals).returncode == 0
    out = site.dir / "report.html"
    made = cli("report", str(site.dir / "tp.jsonl"), "--goal", "deal", "--lookback-days", "365",
               "--window-days", "365", "--min-sample", "1", "--out", str(out))
    assert made.returncode == 0, made.stderr
    html = out.read_text("utf-8")
    section = html[html.index('<section id="revenue">'):]
    section = section[:section.index("</section>")]
    total = sum(1000 + 100 * i for i in range(len(PEOPLE)))
    assert f"<td>direct</td><td>{total:,.0f}</td>" in section  # last touch: all of it to direct
    assert "<td>hero:pricing</td>" in section and "per treated visitor" in section


def test_forget_and_export_find_the_imported_conversions(deployment: Any, pg: PostgresServer) -> None:
    site, pg_url, ids, _, deals = deployment
    table = pg_url.rsplit("=", 1)[1]
    assert site.import_(deals).returncode == 0
    person = "multi@example.com"
    exported = cli("export", person, "--config", str(site.config_path))
    assert exported.returncode == 0, exported.stderr
    held = json.loads(exported.stdout)["records"]
    assert len(held) == 3
    for records in held.values():
        assert [r["goal"] for r in records if r["type"] == "conversion"] == ["deal"]
    forgot = cli("forget", person, "--config", str(site.config_path))
    assert forgot.returncode == 0, forgot.stderr
    again = json.loads(cli("export", person, "--config", str(site.config_path)).stdout)["records"]
    assert all(records == [] for records in again.values())
    assert sqlite_count(site, "conversion") == len(PEOPLE) - 1
    assert pg.query(f"SELECT count(*) FROM {table} WHERE type = 'conversion'")[0][0] == len(PEOPLE) - 1
    # Imported again: the forgotten person has no identify record left, so their deal stays out.
    assert "1 conversion(s) written" not in site.import_(deals).stdout
    assert sqlite_count(site, "conversion") == len(PEOPLE) - 1


def test_a_sink_that_only_forwards_is_sent_the_same_ids_again(tmp_path: Path, collector: CollectorServer) -> None:
    site = Site(tmp_path, ["jsonl:tp.jsonl", collector.url])
    site.visit({"alice@example.com": ["laptop"]}, time.time() - 10 * DAY)
    collector.clear()
    deals = write_csv(tmp_path / "d.csv", [{"email": "alice@example.com", "amount": "40", "closed_at": "2026-01-05"}])
    for _ in range(2):
        done = site.import_(deals)
        assert done.returncode == 0, done.stderr
        assert "1 conversion(s) sent (this sink cannot be read: repeats carry the same id)" in done.stdout
    first, second = [m for m in collector.messages() if m["properties"]["goal"] == "deal"]
    assert first["messageId"] == second["messageId"] and first["userId"] == second["userId"]
    assert "alice" not in json.dumps(first)
    assert len([r for r in jsonl_records(site) if r["type"] == "conversion"]) == 1


# ---------------------------------------------------------------- bad input, no sink needed


@pytest.fixture
def small(tmp_path: Path) -> tuple[Site, float]:
    site = Site(tmp_path, ["jsonl:tp.jsonl", "sqlite:tp.db"], goals={"signup": {"path": "/welcome"},
                                                                       "big": {"path": "/big", "max_value": 500}})
    visited = time.time() - 30 * DAY
    site.visit({"alice@example.com": ["laptop"], "bob@example.com": ["desk"]}, visited)
    return site, visited


def test_bad_rows_are_listed_by_line_and_nothing_is_imported(small: Any) -> None:
    site, visited = small
    before = (site.dir / "tp.jsonl").read_bytes()
    deals = write_csv(site.dir / "deals.csv", [
        {"email": "alice@example.com", "amount": "1200", "closed_at": "2026-01-05"},
        {"email": "", "amount": "5", "closed_at": "2026-01-05"},
        {"email": "bob@example.com", "amount": "12,500", "closed_at": "05/01/2026"},
        {"email": "bob@example.com", "amount": "=HYPERLINK(1)", "closed_at": "2026-01-05"},
        {"email": "bob@example.com", "amount": "2e6", "closed_at": iso(time.time() + 9 * DAY)},
        {"email": "bob@example.com", "amount": "nan", "closed_at": "2026-01-05"},
        {"email": "x" * 300, "amount": "1", "closed_at": "2026-01-05"},
    ])
    done = site.import_(deals)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert "6 bad row(s)" in lines[0]
    assert any(line.startswith("  line 3: email: empty") for line in lines)
    assert any(line.startswith("  line 4: closed_at: '05/01/2026' is not an ISO 8601 date") and "'12,500'" in line
               for line in lines)
    assert any(line.startswith("  line 5: amount: '=HYPERLINK(1)' is not a number") for line in lines)
    assert any(line.startswith("  line 6:") and "in the future" in line for line in lines)
    assert any(line.startswith("  line 7: amount:") for line in lines)
    assert any(line.startswith("  line 8: email: user_id must have 1 to 256 characters") for line in lines)
    assert "nothing imported" in done.stderr
    assert (site.dir / "tp.jsonl").read_bytes() == before

    skipped = site.import_(deals, "--skip-bad-rows")
    assert skipped.returncode == 0, skipped.stderr
    assert "7 row(s) read, 6 bad and skipped" in skipped.stdout
    assert "jsonl:tp.jsonl: 1 conversion(s) written" in skipped.stdout


def test_values_are_bounded_like_the_event_endpoint(small: Any) -> None:
    site, _ = small
    rows = [{"email": "alice@example.com", "amount": "2000000", "closed_at": "2026-01-05"}]
    done = site.import_(write_csv(site.dir / "d.csv", rows))
    assert done.returncode == 1
    assert "line 2: amount: a value is at most 1e+06 either way (events.max_value)" in done.stderr
    # a configured goal's max_value bounds its own conversions, from 0
    rows = [{"email": "alice@example.com", "amount": "600", "closed_at": "2026-01-05"},
            {"email": "bob@example.com", "amount": "-1", "closed_at": "2026-01-05"}]
    args = ["import-conversions", str(write_csv(site.dir / "e.csv", rows)), "--user-column", "email",
            "--value-column", "amount", "--date-column", "closed_at", "--goal", "big", "--config",
            str(site.config_path)]
    big = cli(*args)
    assert big.returncode == 1
    assert "line 2: amount: the value of 'big' is between 0 and 500" in big.stderr
    assert "line 3: amount: the value of 'big' is between 0 and 500" in big.stderr


def test_a_file_that_cannot_be_read_says_why(small: Any) -> None:
    site, _ = small
    missing = site.import_(site.dir / "nope.csv")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    deals = write_csv(site.dir / "d.csv", [])
    wrong = cli("import-conversions", str(deals), "--user-column", "mail", "--date-column", "closed_at", "--goal",
                "deal", "--config", str(site.config_path))
    assert wrong.returncode == 2 and "no column 'mail'" in wrong.stderr and "Traceback" not in wrong.stderr
    goal = cli("import-conversions", str(deals), "--user-column", "email", "--date-column", "closed_at", "--goal",
               "a deal!", "--config", str(site.config_path))
    assert goal.returncode == 2 and "event name" in goal.stderr


def test_jsonl_input_unmatched_rows_and_a_deal_id_column(small: Any) -> None:
    site, _ = small
    lines = [{"user": "alice@example.com", "amount": 300, "closed": "2026-02-01T10:00:00+02:00", "deal": "D-1"},
             {"user": "alice@example.com", "amount": 300, "closed": "2026-02-01T10:00:00+02:00", "deal": "D-2"},
             {"user": "carol@example.com", "amount": 10, "closed": "2026-02-01", "deal": "D-3"},
             "not an object"]
    path = site.dir / "deals.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "{torn\n")
    args = ["import-conversions", str(path), "--user-column", "user", "--value-column", "amount", "--date-column",
            "closed", "--id-column", "deal", "--goal", "deal", "--config", str(site.config_path)]
    bad = cli(*args)
    assert bad.returncode == 1
    assert "line 4: not a JSON object" in bad.stderr and "line 5: not a JSON object" in bad.stderr
    done = cli(*args, "--skip-bad-rows")
    assert done.returncode == 0, done.stderr
    assert "jsonl:tp.jsonl: 2 conversion(s) written" in done.stdout  # D-1 and D-2 stay two; carol skipped
    deals = [r for r in jsonl_records(site) if r["type"] == "conversion"]
    assert {r["ts"] for r in deals} == {"2026-02-01T08:00:00.000Z"}  # the offset honoured, stored as UTC
    kept = cli(*args, "--skip-bad-rows", "--unmatched", "keep")
    assert "jsonl:tp.jsonl: 1 conversion(s) written, 2 held already" in kept.stdout
    assert len([r for r in jsonl_records(site) if r["type"] == "conversion"]) == 3


def test_dry_run_writes_nothing(small: Any) -> None:
    site, _ = small
    before = (site.dir / "tp.jsonl").read_bytes()
    deals = write_csv(site.dir / "d.csv", [{"email": "bob@example.com", "amount": "7", "closed_at": "2026-01-05"}])
    done = site.import_(deals, "--dry-run")
    assert done.returncode == 0 and "jsonl:tp.jsonl: 1 conversion(s) would be written" in done.stdout
    assert (site.dir / "tp.jsonl").read_bytes() == before


# ---------------------------------------------------------------- the windows and the Python walk


def test_windows_go_up_to_365_days_and_no_further(small: Any) -> None:
    site, _ = small
    source = str(site.dir / "tp.jsonl")
    for command, option in (("attribution", "--lookback-days"), ("lift", "--window-days")):
        assert cli(command, source, option, "365").returncode == 0
        for wrong in ("366", "0", "nan", "a year"):
            refused = cli(command, source, option, wrong)
            assert refused.returncode == 2 and "Traceback" not in refused.stderr, (command, wrong)
            assert "at most 365" in refused.stderr or "not a number of days" in refused.stderr
    con = open_source([source])
    build_journeys(con, lookback_days=365)
    with pytest.raises(ValueError, match="at most 365"):
        build_journeys(con, lookback_days=366)
    with pytest.raises(ValueError, match="at most 365"):
        outcomes_sql(con, window_days=400)


def test_the_python_walk_counts_imported_conversions_as_duckdb_does(deployment: Any) -> None:
    site, _, _, _, deals = deployment
    assert site.import_(deals, "--unmatched", "keep").returncode == 0
    records = jsonl_records(site)
    con = open_source([str(site.dir / "tp.jsonl")])
    for window in (30.0, 365.0):
        for goal in (None, "deal"):
            assert outcomes_sql(con, window_days=window, goal=goal) == outcomes(records, window_days=window, goal=goal)
    year = outcomes(records, window_days=365.0, goal="deal")[("hero", "pricing")]
    assert year.treatment.converted + year.holdout.converted == sum(len(d) for d in PEOPLE.values())


# ---------------------------------------------------------------- any cell at all

CELL = st.one_of(st.text(max_size=40), st.sampled_from(["2026-01-05", "2026-01-05T10:00:00Z", "12500", "1e308",
                                                        "-0", "inf", "NaN", " 7 ", "=1+1", "\x00", "\ufeff"]))


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(CELL, CELL, CELL), max_size=6))
def test_no_cell_makes_anything_but_a_row_or_a_line_s_problem(tmp_path_factory: Any, rows: list[Any]) -> None:
    path = tmp_path_factory.mktemp("cells") / "d.csv"
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "amount", "closed_at"])
        writer.writerows(rows)
    now = time.time()
    try:
        good, bad = read_rows(path, Columns("email", "closed_at", "amount"), "csv", now)
    except InputError:
        return  # a file that is not CSV at all (a NUL byte, say): one message, nothing imported
    for row in good:
        assert row.user and row.user == row.user.strip() and len(row.user) <= 256
        assert 0 <= row.t <= now + DAY and row.value is not None and abs(row.value) < float("inf")
    assert all(isinstance(line, int) and message for line, message in bad)
