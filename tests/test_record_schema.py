"""The record schema: version 4's fields and types, and the doc that must describe every one."""

from __future__ import annotations

import re
from pathlib import Path

from personalize_mw.rules.protocol import HOLDOUT, Decision
from personalize_mw.touchpoints.record import (
    FIELDS,
    SCHEMA_VERSION,
    TYPES,
    exposure,
    finalize,
    from_template,
    new_record,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "touchpoints.md"
UTM = dict.fromkeys(("source", "medium", "campaign", "term", "content"))
CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}


def test_version_two_has_the_identity_fields_and_nulls_by_default() -> None:
    assert SCHEMA_VERSION == 4
    record = finalize(new_record("pageview", 0.0, visitor="v", session="s", path="/", referrer_host=None,
                                 channel="direct", utm=UTM, consent=CONSENT))
    assert list(record) == list(FIELDS)
    assert record["schema"] == 4
    for name in ("user", "account", "event", "props", "ip", "experiment", "holdout_share"):
        assert record[name] is None
    assert {"identify", "event", "suppress"} <= set(TYPES)


def test_new_record_takes_the_new_fields() -> None:
    record = new_record("event", 0.0, visitor=None, session=None, path="/", referrer_host=None,
                        channel="direct", utm=UTM, consent=CONSENT, event="video_played", value=3.5,
                        props={"length": 30}, ip="203.0.113.0", user="u-1")
    assert (record["event"], record["value"], record["props"], record["ip"], record["user"]) == \
        ("video_played", 3.5, {"length": 30}, "203.0.113.0", "u-1")


def test_an_exposure_from_the_page_template_is_the_record_from_template_makes() -> None:
    base = new_record("", 0.0, visitor="v", session="s", path="/", referrer_host=None, channel="direct",
                      utm=UTM, consent=CONSENT)
    decision = Decision("b", "hero.b", experiment="exp", arm=HOLDOUT, default=True, holdout_share=0.1)
    made = exposure(from_template(base, "exposure", 5.0), "hero", decision)
    assert made == from_template(base, "exposure", 5.0, slot="hero", variant="b", rule="hero.b", arm=HOLDOUT,
                                 experiment="exp", holdout_share=0.1)
    assert list(finalize(made)) == list(FIELDS)  # schema order kept


def test_the_doc_describes_every_field_and_type() -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))
    assert documented == set(FIELDS)
    for kind in TYPES:
        assert f"**{kind}**" in text, f"docs/touchpoints.md does not say when a {kind} record is written"
    assert f"`schema: {SCHEMA_VERSION}`" in text
