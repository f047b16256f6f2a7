"""--until: a readout as of a past moment equals the readout of the records cut at that moment (issue 11, item 8)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from servers import PostgresServer, pg, postgres  # noqa: F401  (fixtures)

from personalize_mw.analytics import open_source
from personalize_mw.analytics.lift import lift, parse_ts
from personalize_mw.analytics.report import collect
from personalize_mw.analytics.simulate import simulate, write_jsonl
from personalize_mw.analytics.timeline import end_of_day, interval_paths, parse_until, records_until
from personalize_mw.cli import main
from personalize_mw.touchpoints.postgresql import PostgresSink
from personalize_mw.touchpoints.sqlite import SqliteSink

MOMENT = "2026-10-15T13:30:00+02:00"  # mid-run, not at midnight, not in UTC


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return list(simulate(2500, seed=5))


@pytest.fixture(scope="module")
def files(records: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(every record, the records at or before MOMENT), written as the sink writes them."""
    folder = tmp_path_factory.mktemp("until")
    cut = parse_until(MOMENT)
    full, truncated = folder / "full.jsonl", folder / "truncated.jsonl"
    write_jsonl(records, full)
    kept = [r for r in records if parse_ts(r["ts"]) <= cut]
    assert 0 < len(kept) < len(records)  # the moment cuts the run
    write_jsonl(kept, truncated)
    return full, truncated


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_parse_until_forms() -> None:
    assert parse_until("2026-10-15T13:30:00+02:00") == datetime(2026, 10, 15, 11, 30, tzinfo=UTC)
    assert parse_until("2026-10-15T11:30:00Z") == datetime(2026, 10, 15, 11, 30, tzinfo=UTC)
    assert parse_until("2026-10-15T11:30") == datetime(2026, 10, 15, 11, 30, tzinfo=UTC)  # no zone: UTC
    assert parse_until("2026-10-15") == datetime(2026, 10, 15, 23, 59, 59, 999999, tzinfo=UTC)  # the day's end
    with pytest.raises(ValueError, match="not an ISO 8601 timestamp"):
        parse_until("yesterday")


@pytest.mark.parametrize("command", ["lift", "attribution", "report", "plan"])
def test_a_bad_until_is_a_usage_error(command: str, files: tuple[Path, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command, str(files[0]), "--until", "last tuesday"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "argument --until: 'last tuesday' is not an ISO 8601 timestamp" in err and "Traceback" not in err


def test_lift_until_equals_lift_of_the_truncated_file(files: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    full, truncated = files
    as_of = _json(capsys, "lift", str(full), "--until", MOMENT, "--holdout-share", "0.5", "--format", "json")
    cut = _json(capsys, "lift", str(truncated), "--holdout-share", "0.5", "--format", "json")
    everything = _json(capsys, "lift", str(full), "--holdout-share", "0.5", "--format", "json")
    assert as_of.pop("until") == "2026-10-15T11:30:00Z" and cut.pop("until") is None
    assert as_of == cut
    everything.pop("until")
    assert everything["variants"] != cut["variants"]  # the cut mattered: more visitors later


def test_attribution_until_equals_attribution_of_the_truncated_file(files: tuple[Path, Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    full, truncated = files
    for by in ("channel", "variant"):
        as_of = _json(capsys, "attribution", str(full), "--by", by, "--until", MOMENT, "--format", "json")
        cut = _json(capsys, "attribution", str(truncated), "--by", by, "--format", "json")
        assert as_of.pop("until") == "2026-10-15T11:30:00Z" and cut.pop("until") is None
        assert as_of == cut and cut["converting_journeys"] > 0


def test_plan_until_equals_plan_of_the_truncated_file(files: tuple[Path, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    full, truncated = files
    as_of = _json(capsys, "plan", str(full), "--until", MOMENT, "--format", "json")
    cut = _json(capsys, "plan", str(truncated), "--format", "json")
    assert as_of.pop("until") == "2026-10-15T11:30:00Z" and cut.pop("until") is None
    assert as_of == cut and {p["slot"] for p in cut["plans"]} == {"hero", "cta"}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_until_reads_each_store_as_the_jsonl_cut(kind: str, records: list[dict[str, Any]], files: tuple[Path, Path],
                                                 tmp_path: Path, request: pytest.FixtureRequest,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Written by the real sinks; SQLite and PostgreSQL rows are streamed through Python to DuckDB (unless
    DuckDB's scanners are installed), each cut at the moment before it leaves the store: the same readout."""
    if kind == "sqlite":
        sink: Any = SqliteSink(tmp_path / "tp.db")
        spec = f"sqlite:{tmp_path / 'tp.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("pg")
        table = f"until_{uuid.uuid4().hex[:10]}"
        spec = f"{server.url}?table={table}"
        sink = PostgresSink(spec)
        request.addfinalizer(lambda: server.query(f"DROP TABLE IF EXISTS {table}"))
    sink.write(records)
    sink.close()
    cut = _json(capsys, "lift", str(files[1]), "--format", "json")
    for moment, expected in ((MOMENT, cut), ("2026-10-15T11:30:00Z", cut)):  # the same moment, written two ways
        as_of = _json(capsys, "lift", spec, "--until", moment, "--format", "json")
        as_of.pop("until"), expected.pop("until", None)
        assert as_of == expected
    # only the rows to then leave the store (SQLite's: to the end of the day after, by their date text)
    until = parse_until(MOMENT)
    read = open_source([spec], until=until).execute("SELECT count(*) FROM pmw_all").fetchone()[0]
    bound = until if kind == "postgresql" else end_of_day(until.date() + timedelta(days=1))
    assert read == sum(1 for r in records if parse_ts(r["ts"]) <= bound) < len(records)
    credit = _json(capsys, "attribution", spec, "--until", MOMENT, "--format", "json")
    credit.pop("until")
    truncated = _json(capsys, "attribution", str(files[1]), "--format", "json")
    truncated.pop("until")
    assert credit == truncated


def test_python_lift_until_equals_lift_of_the_truncated_records(records: list[dict[str, Any]]) -> None:
    cut = parse_until(MOMENT)
    kept = [r for r in records if parse_ts(r["ts"]) <= cut]
    assert lift(records_until(records, cut), holdout_share=0.5) == lift(kept, holdout_share=0.5)
    assert lift(records_until(records, None)) == lift(records)


def test_report_until_equals_report_of_the_truncated_file(files: tuple[Path, Path]) -> None:
    full, truncated = files
    until = parse_until(MOMENT)
    as_of = collect(open_source([str(full)], until=until), ["x"], goal="signup", holdout_share=0.5, until=until)
    cut = collect(open_source([str(truncated)]), ["x"], goal="signup", holdout_share=0.5)
    assert as_of.lift == cut.lift and as_of.totals == cut.totals and as_of.daily == cut.daily
    assert as_of.channel_credit == cut.channel_credit and as_of.funnel == cut.funnel
    assert as_of.paths == cut.paths and as_of.progress == cut.progress
    assert as_of.until == until and cut.until is None


def test_each_day_of_the_path_is_the_readout_until_that_day(files: tuple[Path, Path]) -> None:
    full, _ = files
    con = open_source([str(full)])
    paths = interval_paths(con, goal="signup")
    rows = {r.key: r for r in collect(con, ["x"], goal="signup").lift}  # the view is left as it was
    assert set(paths) == set(rows)
    for key, path in paths.items():
        days = [p.day for p in path]
        assert days == sorted(days) and len(days) >= 25  # a four-week run, one point a day
        last = path[-1]
        assert (last.low, last.high) == pytest.approx((rows[key].seq_abs_low, rows[key].seq_abs_high))
    day = paths["hero:pricing"][9]
    until = parse_until(day.day)
    as_of = {r.key: r for r in collect(open_source([str(full)], until=until), ["x"], goal="signup").lift}
    assert (day.low, day.high) == pytest.approx((as_of["hero:pricing"].seq_abs_low,
                                                 as_of["hero:pricing"].seq_abs_high))
    assert day.visitors == as_of["hero:pricing"].n_treatment + as_of["hero:pricing"].n_holdout
    # the visitors only grow, and the always-valid interval narrows as they come in
    visitors = [p.visitors for p in paths["hero:pricing"]]
    assert visitors == sorted(visitors) and visitors[0] < visitors[-1]
    first, final = paths["hero:pricing"][0], paths["hero:pricing"][-1]
    assert final.high - final.low < first.high - first.low
