"""The simulation driven through the real example site: the middleware assigns the arms."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from personalize_mw.analytics import open_source
from personalize_mw.analytics.report import collect
from personalize_mw.analytics.simulate import HOLDOUT, TRUE_EFFECTS
from personalize_mw.analytics.simulate_site import simulate_site
from personalize_mw.cli import main

VISITORS = 2000
SEED = 2  # a seeded draw: each 95 % interval misses its truth 1 time in 20 (test_report runs 10 000 visitors)


def test_site_simulation_recovers_the_truth(tmp_path: Path) -> None:
    out = tmp_path / "touchpoints.jsonl"
    simulate_site(VISITORS, out, seed=SEED)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    exposures = [r for r in records if r["type"] == "exposure"]
    arms = Counter(r["arm"] for r in exposures)
    assert arms["treatment"] and arms["holdout"] and arms["unenrolled"]
    assert all(r["schema"] == 4 and r["experiment"] in ("hero", "cta") for r in exposures)
    # the middleware records the share each arm was assigned with; lift checks against it untold
    assert {r["holdout_share"] for r in exposures if r["arm"] != "unenrolled"} == {HOLDOUT}
    assert all(r["visitor"] is None for r in exposures if r["arm"] == "unenrolled")
    # spread over the simulated four weeks, through the middleware's own clock
    days = {r["ts"][:10] for r in records}
    assert len(days) >= 28 and min(days) == "2026-10-01"
    assert Counter(r["goal"] for r in records if r["type"] == "conversion")["signup"] > 100

    data = collect(open_source([str(out)]), [out.name], goal="signup", truth=TRUE_EFFECTS)
    rows = {row.key: row for row in data.lift}
    assert {"hero:pricing", "hero:linkedin", "hero:switcher", "hero:reviews", "cta:benchmark"} <= set(rows)
    for key, effect in TRUE_EFFECTS.items():
        assert rows[key].abs_low <= effect <= rows[key].abs_high, (key, rows[key])
        assert not rows[key].srm and rows[key].holdout_share == HOLDOUT and rows[key].srm_p is not None
    last = {key: row.credit["last"] for key, row in rows.items()}
    assert max(last, key=last.__getitem__) == "hero:pricing"


def test_same_seed_same_records(tmp_path: Path) -> None:
    def strip(path: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k != "id"} for line in path.read_text().splitlines()]

    simulate_site(40, tmp_path / "a.jsonl", seed=5)
    simulate_site(40, tmp_path / "b.jsonl", seed=5)
    assert strip(tmp_path / "a.jsonl") == strip(tmp_path / "b.jsonl")


def test_a_config_runs_with_its_own_holdouts_and_a_bad_one_is_a_message(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """simulate --config: the loop simulates a patched config again; its holdouts, not the simulation's 0.5."""
    example = Path(__file__).resolve().parent.parent / "example_site"
    shutil.copytree(example / "variants", tmp_path / "variants")
    text = (example / "personalize.yaml").read_text(encoding="utf-8")
    config = tmp_path / "personalize.yaml"  # hero gets a holdout of 0.3; cta keeps none, as in the example
    config.write_text(text.replace("\n  hero:", "\n  hero:\n    holdout: 0.3  #", 1), encoding="utf-8")
    out = tmp_path / "sim.jsonl"
    assert main(["simulate", "--config", str(config), "--visitors", "1500", "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    exposures = [r for r in records if r["type"] == "exposure" and r["arm"] in ("treatment", "holdout")]
    shares = {r["slot"]: r["holdout_share"] for r in exposures}
    assert shares == {"hero": 0.3, "cta": None}  # cta has no holdout in this config
    held = Counter((r["slot"], r["arm"]) for r in exposures)
    assert held[("cta", "holdout")] == 0 and held[("cta", "treatment")] > 100
    assert 0.2 < held[("hero", "holdout")] / (held[("hero", "holdout")] + held[("hero", "treatment")]) < 0.4
    assert {r["slot"] for r in records if r["type"] == "exposure"} >= {"hero", "cta"}
    assert "holdout_share" not in json.loads(out.with_suffix(".truth.json").read_text(encoding="utf-8"))
    (tmp_path / "bad.yaml").write_text("slots: [1, 2\n", encoding="utf-8")
    for bad in ("bad.yaml", "missing.yaml"):
        assert main(["simulate", "--config", str(tmp_path / bad), "--visitors", "5", "--out", str(out)]) == 1
        assert capsys.readouterr().err.startswith("simulate: ")
    assert main(["simulate", "--mode", "direct", "--config", str(config), "--out", str(out)]) == 1
