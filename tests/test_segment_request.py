"""``--by segment`` on utm_* and referrer_host: the first exposure's request as the records carry it.

The site simulation goes through example_site and the real middleware, so its
records carry the referrers and UTM parameters the engine read, and the variant
the engine chose with them: the offline cells are checked against both.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from servers import pg, postgres  # noqa: F401  (fixtures)

from personalize_mw.analytics.compact_command import compact
from personalize_mw.analytics.segment_cells import segment_cells
from personalize_mw.analytics.simulate_site import simulate_site
from personalize_mw.analytics.source import open_source
from personalize_mw.cli import main
from personalize_mw.config import load_config
from tests.test_attribution import store  # noqa: F401  (the fixture: records through each real sink)
from tests.test_lift import exposure

CONFIG = Path(__file__).resolve().parent.parent / "example_site" / "personalize.yaml"
REQUEST_SEGMENTS = ("linkedin_campaign", "competitor_search", "review_site")
LINKEDIN = re.compile(r"(^|\.)linkedin\.com$")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("site") / "sim.jsonl"
    simulate_site(300, out, seed=3)
    return out, [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def _first_exposures(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(experiment, visitor) -> the first exposure with an arm, by hand."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: r["ts"]):
        if r["type"] == "exposure" and r["visitor"] and r["arm"] in ("treatment", "holdout"):
            first.setdefault((r["experiment"], r["visitor"]), r)
    return first


def _lift_json(*args: str) -> tuple[dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdout", out)
        patch.setattr(sys, "stderr", err)
        assert main(["lift", *args, "--goal", "signup", "--by", "segment", "--config", str(CONFIG),
                     "--format", "json"]) == 0
    return json.loads(out.getvalue()), err.getvalue()


def test_the_linkedin_cell_is_the_visitors_whose_first_exposure_came_from_linkedin(site: Any) -> None:
    path, records = site
    readout, err = _lift_json(str(path))
    segments = readout["segments"]
    assert set(REQUEST_SEGMENTS) <= set(segments["evaluated"])
    assert not set(REQUEST_SEGMENTS) & set(segments["not_evaluable"])
    # what the records truly lack stays not evaluable, with its reason
    assert segments["not_evaluable"]["german_speaker"] == {"language": "the Accept-Language header is not recorded"}
    assert "query.ref" in segments["not_evaluable"]["partner_link"] and "partner_link not evaluable" in err
    first = _first_exposures(records)
    by_hand = {key for key, r in first.items() if (r["utm"] or {}).get("source") == "linkedin"}
    # the segment's other branch (a linkedin.com referrer) adds nobody here: every such request had the utm
    assert by_hand == {key for key, r in first.items()
                       if key in by_hand or LINKEDIN.search(r["referrer_host"] or "")}
    found = segment_cells(open_source([str(path)], request=True), load_config(CONFIG))
    assert {key for key, names in found.members.items() if "linkedin_campaign" in names} == by_hand
    assert len(by_hand) > 20
    # the readout's cell counts the same visitors: hero:linkedin's, all of them from LinkedIn
    cell = next(r for r in readout["variants"] if r["slot"] == "hero" and r["variant"] == "linkedin"
                and r["metric"] == "signup" and r["breakdown"] == {"by": "segment", "value": "linkedin_campaign"})
    shown = {key for key in by_hand if key[0] == "hero" and first[key]["variant"] == "linkedin"}
    assert cell["n_treatment"] + cell["n_holdout"] == len(shown) > 0 and cell["same_as_whole"]


def test_the_offline_segments_choose_the_variant_the_engine_chose(site: Any) -> None:
    """The hero rules in order, evaluated offline on each first exposure, give the variant the middleware
    recorded (shown, or would have been, for the held out): the same values, read as the engine read them."""
    path, records = site
    found = segment_cells(open_source([str(path)], request=True), load_config(CONFIG))
    rules = [("pricing", lambda s: "pricing_intent" in s and "customer" not in s),
             ("linkedin", lambda s: "linkedin_campaign" in s), ("switcher", lambda s: "competitor_search" in s),
             ("reviews", lambda s: "review_site" in s)]
    hero = {key: r for key, r in _first_exposures(records).items() if key[0] == "hero"}
    chosen = {"pricing", "linkedin", "switcher", "reviews"}
    assert {r["variant"] for r in hero.values()} <= chosen | {"de", "reader", "partner", "account"}
    for key, r in hero.items():
        inside = set(found.members.get(key, ()))
        offline = next((variant for variant, holds in rules if holds(inside)), None)
        assert offline == (r["variant"] if r["variant"] in chosen else None), (key, r, inside)
    assert {"linkedin", "switcher", "reviews"} <= {r["variant"] for r in hero.values()}


def test_each_visitor_is_read_at_their_first_exposures_own_request(tmp_path: Path) -> None:
    """A later exposure's utm or referrer never stands in for the first's, nor its missing one (NULL)."""
    def shown(visitor: str, minutes: float, source: str | None, referrer: str | None) -> dict[str, Any]:
        utm = dict.fromkeys(("source", "medium", "campaign", "term", "content"))
        return {**exposure(visitor, minutes, "treatment"), "path": "/", "utm": {**utm, "source": source},
                "referrer_host": referrer}

    records = [shown("late", 1, None, None), shown("late", 2, "linkedin", "www.linkedin.com"),
               shown("first", 1, "linkedin", None), shown("first", 2, None, None),
               shown("referred", 1, None, "de.linkedin.com"), shown("referred", 2, None, None),
               shown("g2", 1, None, "www.g2.com"), shown("g2", 2, None, "www.capterra.com")]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    found = segment_cells(open_source([str(path)], request=True), load_config(CONFIG))
    members = {visitor: inside for (_, visitor), names in found.members.items()
               if (inside := set(names) & set(REQUEST_SEGMENTS))}
    assert members == {"first": {"linkedin_campaign"}, "referred": {"linkedin_campaign"}, "g2": {"review_site"}}


def test_every_store_carries_them(store: Callable[[list[dict[str, Any]]], str],  # noqa: F811
                                  site: Any) -> None:
    path, records = site
    expected = segment_cells(open_source([str(path)], request=True), load_config(CONFIG)).members
    found = segment_cells(open_source([store(records)], request=True), load_config(CONFIG))
    assert found.members == expected and "linkedin_campaign" in found.evaluated


def test_a_parquet_copy_without_them_says_so_and_the_readouts_read_them_only_when_asked(
        site: Any, tmp_path: Path) -> None:
    path, _ = site
    copy = tmp_path / "tp.parquet"
    compact([str(path)], copy)
    readout, err = _lift_json(str(copy))
    for segment in ("linkedin_campaign", "review_site"):
        reasons = readout["segments"]["not_evaluable"][segment]
        assert "compact's Parquet keeps only the readouts' columns" in next(iter(reasons.values()))
        assert f"segment {segment} not evaluable offline" in err
    assert "pricing_intent" in readout["segments"]["evaluated"]
    # a Parquet copy of the raw lines by another tool (utm a STRUCT there) carries them: the same cells
    raw = tmp_path / "raw.parquet"
    duckdb.connect().execute(f"COPY (SELECT * FROM read_json('{path}')) TO '{raw}' (FORMAT parquet)")
    assert segment_cells(open_source([str(raw)], request=True), load_config(CONFIG)).members == segment_cells(
        open_source([str(path)], request=True), load_config(CONFIG)).members
    # the readouts' view has no request columns unless asked for
    plain = {row[0] for row in open_source([str(path)]).execute("DESCRIBE touchpoints").fetchall()}
    asked = {row[0] for row in open_source([str(path)], request=True).execute("DESCRIBE touchpoints").fetchall()}
    assert not {"utm", "referrer_host"} & plain and {"utm", "referrer_host"} <= asked
    unasked = segment_cells(open_source([str(path)]), load_config(CONFIG))
    assert "linkedin_campaign" in unasked.not_evaluable and "linkedin_campaign" not in unasked.evaluated
