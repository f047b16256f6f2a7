"""personalize-mw compact and the Parquet source: the same readouts as over the JSON lines they came from."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import duckdb
import pytest

from personalize_mw.analytics.lift import outcomes, outcomes_sql
from personalize_mw.analytics.source import open_source, read_once
from personalize_mw.cli import main

READOUTS = (
    ["lift", "--format", "json"],
    ["lift", "--goal", "signup", "--guardrail", "whitepaper", "--by", "channel", "--format", "csv"],
    ["lift", "--unit", "account", "--until", "2026-11-10", "--format", "json"],
    ["attribution", "--by", "channel", "--format", "json"],
    ["attribution", "--by", "variant", "--goal", "signup", "--format", "csv"],
    ["plan", "--format", "json"],
)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulation, plus what it has none of: identify records (with accounts) and an imported conversion."""
    folder = tmp_path_factory.mktemp("compact")
    out = folder / "touchpoints.jsonl"
    assert main(["simulate", "--visitors", "3000", "--seed", "4", "--mode", "direct", "--out", str(out)]) == 0
    first = [json.loads(line) for line in out.read_text().splitlines()[:40]]
    visitors = sorted({r["visitor"] for r in first if r.get("visitor")})[:3]
    extra = [{"type": "identify", "visitor": v, "user": f"u{n % 2}", "account": "acme", "ts": "2026-11-02T10:00:00Z"}
             for n, v in enumerate(visitors)]
    extra.append({"type": "conversion", "visitor": None, "user": "u0", "goal": "signup", "value": 90,
                  "ts": "2026-11-03T10:00:00Z"})
    with out.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in extra))
    return out


def _answer(command: list[str], source: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main([command[0], source, *command[1:]]) in (0, 2)
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def parquet(records: Path) -> Path:
    out = records.with_name("touchpoints.parquet")
    assert main(["compact", str(records), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("command", READOUTS, ids=lambda c: " ".join(c))
def test_every_readout_over_the_parquet_is_the_readout_over_the_json(
        records: Path, parquet: Path, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    over_json = _answer(command, str(records), capsys)
    assert over_json.strip() and _answer(command, str(parquet), capsys) == over_json
    assert _answer(command, f"parquet:{parquet.parent}", capsys) == over_json  # a folder: its *.parquet


def test_compact_writes_a_private_file_and_says_how_many_records(
        records: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tp.parquet"
    assert main(["compact", str(records), "--out", str(out)]) == 0
    lines = len(records.read_text().splitlines())
    assert f"compact: {lines:,} records into {out}" in capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # visitor and user ids, as the sink's own files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tp.parquet"]  # no partial file left


def test_compact_refuses_what_it_cannot_write_and_leaves_nothing(
        records: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compact", str(records), "--out", str(tmp_path / "tp.jsonl")]) == 1
    assert "must end in .parquet" in capsys.readouterr().err
    torn = tmp_path / "torn.jsonl"
    torn.write_text(records.read_text()[:5000] + "\n{\"type\": \"pagev\n")
    assert main(["compact", str(torn), "--out", str(tmp_path / "tp.parquet")]) == 1
    assert "compact:" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["torn.jsonl"]
    assert main(["compact", str(torn), "--skip-bad-lines", "--out", str(tmp_path / "tp.parquet")]) == 0


def test_parquet_from_another_tool_reads_as_the_json(tmp_path: Path) -> None:
    """A DuckDB COPY of the raw lines: every field (nested ones too), ``ts`` as text, the analytics' own
    columns partly missing."""
    from test_lift import conversion, exposure, world

    rows = [exposure("a", 0, "treatment"), conversion("a", 10), exposure("b", 5, "holdout")] + world(800, seed=2)
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({**r, "consent": {"analytics": True}}) + "\n" for r in rows))
    copy = tmp_path / "copy.parquet"
    duckdb.execute(f"COPY (SELECT * FROM read_json('{path}')) TO '{copy}' (FORMAT parquet)")
    assert "device" not in {c[0] for c in duckdb.execute(f"DESCRIBE SELECT * FROM '{copy}'").fetchall()}
    con = read_once(open_source([str(copy)]))
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'pmw_readout'").fetchone() == (0,)
    assert outcomes_sql(con) == outcomes(rows) == outcomes_sql(open_source([str(path)]))
    assert outcomes_sql(con, by="device") == outcomes(rows, by="device")


def test_a_parquet_input_that_is_not_there_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lift", str(tmp_path / "none.parquet")]) == 1
    assert "no touchpoint files" in capsys.readouterr().err


def test_the_report_over_the_parquet_is_the_report_over_the_json(records: Path, parquet: Path,
                                                                 tmp_path: Path) -> None:
    pages = []
    for source in (records, parquet):
        out = tmp_path / f"{source.suffix[1:]}.html"
        assert main(["report", str(source), "--goal", "signup", "--out", str(out)]) == 0
        pages.append(re.sub(r"Generated [^<]*", "", out.read_text()))  # the time, and the input's name
    assert pages[0] == pages[1] and "Causal lift" in pages[0]
