"""personalize-mw simulate, lift and report, run in-process through the CLI's main()."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from personalize_mw.cli import main


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "touchpoints.jsonl"
    assert main(["simulate", "--visitors", "3000", "--seed", "3", "--mode", "direct", "--out", str(out)]) == 0
    return out


def test_simulate_writes_records_and_truth(sim: Path) -> None:
    lines = sim.read_text().splitlines()
    first = json.loads(lines[0])
    assert first["schema"] == 3 and "experiment" in first and "arm" in first
    truth = json.loads(sim.with_name("touchpoints.truth.json").read_text())
    assert truth["effects"]["hero:pricing"] == 0 and truth["holdout_share"] == 0.5
    arms = {json.loads(line)["arm"] for line in lines}
    assert {"treatment", "holdout", "unenrolled"} <= arms


def test_simulate_drives_the_site(tmp_path: Path) -> None:
    out = tmp_path / "site.jsonl"
    assert main(["simulate", "--visitors", "30", "--seed", "1", "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and {r["type"] for r in records} >= {"pageview", "exposure"}
    assert json.loads((tmp_path / "site.truth.json").read_text())["mode"] == "site"


def test_lift_json_and_csv(sim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lift", str(sim), "--goal", "signup", "--holdout-share", "0.5", "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    rows = {f"{r['slot']}:{r['variant']}": r for r in answer["variants"]}
    assert "hero:pricing" in rows and set(rows["hero:pricing"]["credit"]) >= {"last", "markov", "shapley"}
    assert rows["hero:pricing"]["srm"] is False
    assert main(["lift", str(sim), "--goal", "signup", "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["variant"] for r in table} == {"pricing", "linkedin", "switcher", "reviews", "benchmark"}
    assert all(r["srm_p"] == "" for r in table)  # no share given: not checked


def test_lift_srm_is_loud(sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a config claiming a 20 % holdout for the hero slot: the 50/50 split is a mismatch
    config = yaml.safe_load((Path(__file__).parent.parent / "example_site" / "personalize.yaml").read_text())
    config["slots"]["hero"]["holdout"] = 0.2
    config["sink"] = f"jsonl:{tmp_path / 'x.jsonl'}"
    config["base_dir"] = str(Path(__file__).parent.parent / "example_site")
    path = tmp_path / "personalize.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["lift", str(sim), "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert "SRM" in captured.out
    assert "hero:pricing: SAMPLE RATIO MISMATCH" in captured.err
    assert "cta:" not in captured.err  # the cta slot has no configured holdout: unchecked


def test_report_command(sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    truth = sim.with_name("touchpoints.truth.json")
    assert main(["report", str(sim), "--goal", "signup", "--truth", str(truth), "--out", str(out)]) == 0
    html = out.read_text()
    # four charts, and one interval path per variant (five), each with the true effect drawn
    assert html.count("<svg") == 4 + 5 and html.count("<title>true effect") == 5 + 5
    assert "0 with a sample ratio mismatch" in capsys.readouterr().out


def test_torn_line_fails_cleanly_unless_skipped(sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torn = tmp_path / "torn.jsonl"
    torn.write_text(sim.read_text() + '{"id": "x", "ts": "2026-10-0\n')
    assert main(["lift", str(torn), "--format", "json"]) == 1
    assert "lift:" in capsys.readouterr().err
    assert main(["lift", str(torn), "--format", "json", "--skip-bad-lines"]) == 0
    assert json.loads(capsys.readouterr().out)["variants"]


def test_the_report_refuses_values_that_overflow_instead_of_showing_inf(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from personalize_mw.touchpoints.jsonl import JsonlSink
    from personalize_mw.touchpoints.record import finalize_batch, new_record

    consent = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
    utm = dict.fromkeys(("source", "medium", "campaign", "term", "content"))
    records = [new_record(kind, 1.8e9 + i, visitor=f"v{i}", session=f"s{i}", path="/", referrer_host=None,
                          channel="direct", utm=utm, consent=consent, goal="signup" if kind == "conversion" else None,
                          value=1e308 if kind == "conversion" else None)
               for i in range(2) for kind in ("pageview", "conversion")]
    sink = JsonlSink(tmp_path / "tp.jsonl")
    sink.write(finalize_batch(records))
    sink.close()
    out = tmp_path / "report.html"
    assert main(["report", str(tmp_path / "tp.jsonl"), "--out", str(out)]) == 1
    assert "past what a float holds" in capsys.readouterr().err and not out.exists()


def test_lift_several_goals_guardrails_and_breakdowns(sim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lift", str(sim), "--goal", "signup", "--goal", "whitepaper", "--guardrail", "whitepaper",
                 "--by", "channel", "--holdout-share", "0.5", "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["metrics"] == ["signup", "whitepaper"] and answer["guardrails"] == ["whitepaper"]
    assert answer["by"] == "channel" and answer["goal"] is None and "guardrail" in answer["method"]
    rows = answer["variants"]
    assert {r["metric"] for r in rows} == {"signup", "whitepaper"}
    assert {r["guardrail"] for r in rows if r["metric"] == "signup"} == {None}
    assert {r["guardrail"] for r in rows if r["metric"] == "whitepaper"} <= {True, False}
    whole = [r for r in rows if r["breakdown"] is None and r["metric"] == "signup"]
    cells = [r for r in rows if r["breakdown"] is not None and r["metric"] == "signup"]
    assert {r["breakdown"]["by"] for r in cells} == {"channel"}
    for row in whole:  # the cells of a variant add up to it
        mine = [c for c in cells if (c["slot"], c["variant"]) == (row["slot"], row["variant"])]
        assert sum(c["n_treatment"] for c in mine) == row["n_treatment"] and mine
    assert main(["lift", str(sim), "--goal", "signup", "--by", "channel", "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["breakdown_by"] for r in table} == {"", "channel"} and {r["metric"] for r in table} == {"signup"}
    assert {r["breakdown_value"] for r in table} >= {"", "social", "organic"}


def test_a_dropped_guardrail_is_said_plainly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A variant that halves whitepaper downloads, on records written like a sink's, read with a config.
    from test_lift import world

    records = tmp_path / "drop.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in world(3000)))
    config = tmp_path / "personalize.yaml"
    config.write_text("secret_keys: ['0123456789abcdef-secret']\ngoals:\n  signup: {path: /thanks}\n"
                      "  whitepaper: {path: /whitepaper}\nguardrails: [whitepaper]\n"
                      "slots:\n  hero: {holdout: 0.5, rules: []}\n")
    assert main(["lift", str(records), "--goal", "signup", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert "guardrail whitepaper: must not drop" in captured.out and "DROPPED" in captured.out
    assert "lift: hero:pricing · whitepaper: GUARDRAIL DROPPED: whitepaper" in captured.err
    assert main(["lift", str(records), "--guardrail", "signup", "--goal", "signup", "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["variants"]
    assert row["guardrail"] is False  # sign-ups rose


def test_a_goal_named_any_beside_any_goal_is_refused(sim: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lift", str(sim), "--guardrail", "any"]) == 1
    assert "lift: a goal named 'any' reads as any goal" in capsys.readouterr().err
    assert main(["lift", str(sim), "--goal", "signup", "--guardrail", "any", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == ["signup", "any"]
