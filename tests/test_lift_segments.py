"""``lift --by segment``: the config's segments evaluated at each visitor's first exposure, on planted segments."""

from __future__ import annotations

import io
import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from personalize_mw.analytics import open_source
from personalize_mw.analytics.lift import Outcomes, outcomes, outcomes_sql, readout_rows, significant
from personalize_mw.analytics.segment_cells import segment_cells, unrecorded_fields
from personalize_mw.analytics.simulate import SEGMENT_EFFECTS, simulate, write_jsonl
from personalize_mw.analytics.suggest_actions import diff, patched
from personalize_mw.cli import main
from personalize_mw.config import load_config
from tests.test_suggest_actions import _actions, _apply, _drawn, _site

EXAMPLE = Path(__file__).resolve().parent.parent / "example_site"
# At the first exposure of cta:benchmark (a blog post), the planted buyers are the visitors who came
# direct or by email (the other personas land on the blog from search, social, paid search or a review
# site); the researchers come from search, with a few buyers.
PLANTED = {"came_direct": {"channel": {"in": ["direct", "email"]}}, "from_search": {"channel": "organic"}}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("segments")
    records = list(simulate(20_000, seed=7, segments=True))
    write_jsonl(iter(records), folder / "sim.jsonl")
    data = yaml.safe_load((EXAMPLE / "personalize.yaml").read_text(encoding="utf-8"))
    data["segments"] = {**data["segments"], **PLANTED}
    data["base_dir"] = str(EXAMPLE)
    (folder / "personalize.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return folder / "sim.jsonl", folder / "personalize.yaml", json.loads(json.dumps(records))


@pytest.fixture(scope="module")
def readout(planted: tuple[Path, Path, list[dict[str, Any]]]) -> tuple[dict[str, Any], str]:
    """``lift --by segment --format json`` of the planted simulation: (its JSON, its stderr)."""
    path, config, _ = planted
    with pytest.MonkeyPatch.context() as patch:
        err = io.StringIO()
        out = io.StringIO()
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        assert main(["lift", str(path), "--goal", "signup", "--by", "segment", "--config", str(config),
                     "--format", "json"]) == 0
    return json.loads(out.getvalue()), err.getvalue()


def _cell(readout: dict[str, Any], key: str, segment: str | None) -> dict[str, Any]:
    breakdown = None if segment is None else {"by": "segment", "value": segment}
    return next(r for r in readout["variants"] if f"{r['slot']}:{r['variant']}" == key
                and r["breakdown"] == breakdown and r["metric"] == "signup")


def test_a_segment_of_a_planted_persona_recovers_its_sign(readout: tuple[dict[str, Any], str]) -> None:
    found, _ = readout
    assert found["by"] == "segment"
    buyers, searchers = _cell(found, "cta:benchmark", "came_direct"), _cell(found, "cta:benchmark", "from_search")
    whole = _cell(found, "cta:benchmark", None)
    truth = SEGMENT_EFFECTS["buyer"]["cta:benchmark"]
    assert truth < 0 < SEGMENT_EFFECTS["researcher"]["cta:benchmark"]
    assert buyers["abs_lift"] < 0 < whole["abs_lift"] < searchers["abs_lift"]  # the whole hides the buyers' drop
    assert buyers["seq_abs_low"] <= truth <= buyers["seq_abs_high"]
    assert searchers["p_adjusted"] < 0.05 and searchers["seq_abs_low"] > 0
    # Cells overlap and need not add up; each is a subset of its variant's visitors.
    assert buyers["n_treatment"] + searchers["n_treatment"] < whole["n_treatment"]


def test_segments_are_evaluated_before_the_exposure_not_after(planted: Any,
                                                              readout: tuple[dict[str, Any], str]) -> None:
    path, config, records = planted
    found_readout, err = readout
    # `customer` (signed up) holds for hundreds of treated visitors after their exposure, for none before it.
    assert not [r for r in found_readout["variants"] if r["breakdown"] == {"by": "segment", "value": "customer"}]
    assert "no experiment visitor was in customer" in err and "customer" in found_readout["segments"]["empty"]
    # pricing_intent (/pricing read twice) by hand from the JSONL, at each visitor's first hero exposure.
    first: dict[str, str] = {}
    for r in records:
        if r["type"] == "exposure" and r["slot"] == "hero" and r["visitor"] and r["arm"] != "unenrolled":
            first[r["visitor"]] = min(first.get(r["visitor"], r["ts"]), r["ts"])
    reads: dict[str, int] = defaultdict(int)
    for r in records:
        if r["type"] == "pageview" and r["path"] == "/pricing" and r["visitor"] in first \
                and r["ts"] <= first[r["visitor"]]:
            reads[r["visitor"]] += 1
    expected = {v for v, n in reads.items() if n >= 2}
    found = segment_cells(open_source([str(path)]), load_config(config))
    assert {v for (unit, v), names in found.members.items() if unit == "hero-sim" and "pricing_intent" in names} \
        == expected and len(expected) > 1000
    # Every visitor the example rule showed hero:pricing to was in pricing_intent: that cell is the whole.
    pricing = [r for r in found_readout["variants"] if r["variant"] == "pricing" and r["breakdown"] is not None
               and r["breakdown"]["value"] == "pricing_intent"]
    assert pricing and all(r["same_as_whole"] for r in pricing)


def test_conditions_the_records_cannot_answer_make_a_segment_not_evaluable(
        readout: tuple[dict[str, Any], str]) -> None:
    found, err = readout
    not_evaluable = found["segments"]["not_evaluable"]
    for segment, field in (("partner_link", "query.ref"), ("german_speaker", "language")):
        assert field in not_evaluable[segment] and segment not in found["segments"]["evaluated"]
        line = next(n for n in err.splitlines() if n.startswith(f"lift: segment {segment} not evaluable offline"))
        assert field in line
        assert not [r for r in found["variants"] if r["breakdown"] == {"by": "segment", "value": segment}]
    # the direct simulation records each pageview's device, referrer and utm, so a device condition and the
    # example's utm_* and referrer_host segments are answered from the records (tests/test_segment_request.py)
    for segment in ("human", "linkedin_campaign", "competitor_search", "review_site"):
        assert segment not in not_evaluable and segment in found["segments"]["evaluated"]
    segments = {"crm_lead": {"crm.stage": "lead"}, "inner": {"any": [{"segment": "crm_lead"}, {"device": "mobile"}]},
                "fine": {"all": [{"visits": {"gte": 2}}, {"not": {"country": "US"}}, {"hour": {"lt": 12}}]}}
    assert unrecorded_fields(segments["inner"], segments) == ["crm.stage"]
    assert unrecorded_fields("fine", segments) == []


def test_both_paths_count_the_same_segment_cells(planted: Any) -> None:
    path, config, records = planted
    con = open_source([str(path)])
    members = segment_cells(con, load_config(config)).members
    for goal in (None, "signup"):
        assert outcomes_sql(con, goal=goal, by="segment", members=members) == outcomes(
            records, goal=goal, by="segment", members=members)
    with pytest.raises(ValueError, match="needs each visitor's segments"):
        outcomes(records, by="segment")


def test_by_segment_needs_a_config(planted: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path, _, _ = planted
    assert main(["lift", str(path), "--by", "segment"]) == 1
    assert "--by segment needs --config" in capsys.readouterr().err


def test_the_report_and_suggest_actions_take_by_segment(planted: Any, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path, config, _ = planted
    out = tmp_path / "report.html"
    assert main(["report", str(path), "--goal", "signup", "--by", "segment", "--config", str(config),
                 "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert "cta:benchmark segment=came_direct" in html and "partner_link not evaluable offline" in html
    assert main(["suggest", "actions", str(path), "--goal", "signup", "--by", "segment", "--config",
                 str(config), "--out", str(tmp_path / "out.patch")]) == 0
    assert "not evaluable offline" in capsys.readouterr().err


def test_a_targeted_rule_narrows_with_the_segment_condition(tmp_path: Path) -> None:
    rng = random.Random(5)
    found = {("hero", "linkedin"): _drawn(rng, {"phone": (3000, 0.1, 0.08), "evaluator": (3000, 0.1, -0.08)})}
    actions = _actions(found, by="segment")
    assert actions["hero:linkedin"].kind == "target" and actions["hero:linkedin"].by == "segment"
    config = _site(tmp_path)
    text = config.read_text(encoding="utf-8")
    _apply(tmp_path, diff(text, patched(text, list(actions.values()), permanent_holdout=0.05), "personalize.yaml"))
    rules = {rule.variant: rule for rule in load_config(config).slots["hero"].rules}
    assert rules["linkedin"].if_ == {"all": ["linkedin_campaign", {"segment": "phone"}]}
    rows = readout_rows({"signup": found}, by="segment")
    assert [significant(r) for r in rows if r.breakdown] == [-1, 1]  # evaluator, phone: sorted by name


def test_a_segment_everyone_is_in_is_no_target() -> None:
    # Helps phone visitors a lot, hurts evaluators a little: the whole helps, and so does `human`, which
    # holds every visitor; narrowing the rule to `human` would narrow nothing.
    whole = _drawn(random.Random(2), {"phone": (3000, 0.1, 0.12), "evaluator": (3000, 0.1, -0.05)})
    whole.cells["human"] = Outcomes(treatment=whole.treatment, holdout=whole.holdout)
    rows = readout_rows({"signup": {("hero", "linkedin"): whole}}, by="segment")
    human = next(r for r in rows if r.breakdown == {"by": "segment", "value": "human"})
    assert human.same_as_whole and significant(human) == significant(rows[0]) == 1
    action = _actions({("hero", "linkedin"): whole}, by="segment")["hero:linkedin"]
    assert action.kind == "target" and action.helped == ["phone"]


def test_device_and_country_conditions_read_the_first_exposures_record(tmp_path: Path) -> None:
    from tests.test_lift import world

    records = world(400, seed=9)
    rng = random.Random(4)
    for r in records:
        if r["type"] == "exposure":
            r["device"], r["country"] = rng.choice(["mobile", "desktop", "bot"]), rng.choice(["US", "DE", None])
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    found = segment_cells(open_source([str(path)]), load_config(EXAMPLE / "personalize.yaml"))
    assert not {"phone", "human", "outside_the_us"} & set(found.not_evaluable)
    first = {(r["experiment"], r["visitor"]): r for r in records if r["type"] == "exposure"}
    for segment, holds in (("phone", lambda r: r["device"] == "mobile"), ("human", lambda r: r["device"] != "bot"),
                           ("outside_the_us", lambda r: r["country"] != "US")):
        inside = {key for key, names in found.members.items() if segment in names}
        assert inside == {key for key, r in first.items() if holds(r)} and inside, segment
