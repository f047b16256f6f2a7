"""Time conditions (after, before, weekday, hour) in the configured zone, read from the core's injected clock."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CORE_SECRET

from personalize_mw import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.errors import ConfigError

PAGE = b"<p><!-- personalize:hero -->Default<!-- /personalize:hero --></p>"
CONSENT = {"user-agent": "Mozilla/5.0 (X11)", "cookie": "pmw_consent=analytics=1&personalization=1&advertising=0"}


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def core(tmp_path: Path, when: Any, timezone: str = "Europe/Berlin", consent: bool = True,
         **extra: Any) -> tuple[Personalizer, Clock]:
    clock = Clock()
    config = load_config({"secret_keys": [CORE_SECRET], "sink": f"jsonl:{tmp_path / 'tp.jsonl'}",
                          "timezone": timezone, **extra,
                          "slots": {"hero": {"rules": [{"if": when, "variant": "on", "template": "On"}]}}})
    return Personalizer(config, clock=clock), clock


def shows(personalizer: Personalizer, clock: Clock, at: float, consent: bool = True) -> bool:
    clock.now = at
    headers = CONSENT if consent else {"user-agent": "Mozilla/5.0 (X11)"}
    ctx = RequestContext("GET", "https", "example.com", "/", "", headers)
    outcome = personalizer.visit_safely(lambda: ctx, PAGE, is_page=True)
    return outcome.body is not None and b"On" in outcome.body


def test_a_campaign_starts_and_ends_by_itself_on_berlin_wall_clock_time(tmp_path: Path) -> None:
    # Berlin is UTC+1 in winter: 09:00 local is 08:00 UTC.
    p, clock = core(tmp_path, {"after": "2026-12-01 09:00", "before": "2026-12-24"})
    assert not shows(p, clock, utc("2026-12-01T07:59:59"))
    assert shows(p, clock, utc("2026-12-01T08:00:00"))
    assert shows(p, clock, utc("2026-12-23T22:59:59"))
    assert not shows(p, clock, utc("2026-12-23T23:00:00"))  # midnight of the 24th in Berlin
    assert shows(p, clock, utc("2026-12-10T12:00:00"), consent=False)  # the clock needs no consent
    p.queue.close()


def test_a_start_just_after_the_spring_dst_change_is_in_summer_time(tmp_path: Path) -> None:
    # 2026-03-29: Berlin's clocks go from 02:00 CET to 03:00 CEST; 03:00 local is 01:00 UTC.
    p, clock = core(tmp_path, {"after": "2026-03-29 03:00"})
    assert not shows(p, clock, utc("2026-03-29T00:59:59"))
    assert shows(p, clock, utc("2026-03-29T01:00:00"))
    p.queue.close()


def test_office_hours_follow_new_york_across_its_dst_change(tmp_path: Path) -> None:
    p, clock = core(tmp_path, {"hour": {"gte": 9, "lt": 17}, "weekday": ["mon", "tue", "wed", "thu", "fri"]},
                    timezone="America/New_York")
    # Friday 2026-03-06 is EST (UTC-5): 13:59 UTC is 08:59, 14:00 UTC is 09:00.
    assert not shows(p, clock, utc("2026-03-06T13:59:00"))
    assert shows(p, clock, utc("2026-03-06T14:00:00"))
    # Monday 2026-03-09, after the change to EDT (UTC-4): 13:00 UTC is already 09:00.
    assert shows(p, clock, utc("2026-03-09T13:00:00"))
    assert not shows(p, clock, utc("2026-03-09T21:00:00"))  # 17:00 EDT
    assert not shows(p, clock, utc("2026-03-07T15:00:00"))  # Saturday
    p.queue.close()


def test_the_weekday_is_the_configured_zones_not_utcs(tmp_path: Path) -> None:
    # Friday 23:30 UTC is Saturday 00:30 in Berlin.
    friday_night = utc("2026-12-04T23:30:00")
    p, clock = core(tmp_path, {"weekday": "sat"})
    assert shows(p, clock, friday_night)
    p.queue.close()
    p, clock = core(tmp_path, {"weekday": "sat"}, timezone="UTC")
    assert not shows(p, clock, friday_night)
    p.queue.close()


def test_time_conditions_work_in_segments_and_journeys(tmp_path: Path) -> None:
    p, clock = core(tmp_path, "black_friday", segments={"black_friday": {
        "all": [{"after": "2026-11-27"}, {"before": "2026-11-30 06:00"}]}})
    assert shows(p, clock, utc("2026-11-28T12:00:00")) and not shows(p, clock, utc("2026-11-30T05:00:00"))
    p.queue.close()
    clock = Clock()
    config = load_config({"secret_keys": [CORE_SECRET], "sink": f"jsonl:{tmp_path / 'j.jsonl'}", "timezone": "Europe/Berlin",
                          "journey": {"stages": [{"name": "awareness"},
                                                 {"name": "launch", "if": {"after": "2026-06-01"}}]},
                          "slots": {"hero": {"stages": {"awareness": {"variant": "old", "template": "Old"},
                                                        "launch": {"variant": "on", "template": "On"}}}}})
    j = Personalizer(config, clock=clock)
    assert not shows(j, clock, utc("2026-05-31T21:59:00")) and shows(j, clock, utc("2026-05-31T22:00:00"))
    j.queue.close()


@pytest.mark.parametrize(("when", "message"), [
    ({"after": "next tuesday"}, "not a date and time"),
    ({"weekday": "funday"}, "'weekday' takes a day"),
    ({"hour": {"gte": "nine"}}, "takes a number"),
])
def test_bad_time_conditions_are_refused_at_start_up(tmp_path: Path, when: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        core(tmp_path, when)


def test_an_unknown_time_zone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        core(tmp_path, {"after": "2026-01-01"}, timezone="Mars/Olympus")


def test_check_warns_about_a_rule_whose_window_has_passed(tmp_path: Path) -> None:
    config = tmp_path / "personalize.yaml"
    config.write_text(f"""secret_keys: ["{CORE_SECRET}"]
sink: jsonl:{tmp_path / 'tp.jsonl'}
timezone: Europe/Berlin
segments:
  summer_sale_2020: {{before: 2020-09-01}}
slots:
  hero:
    rules:
      - id: old-sale
        if: summer_sale_2020
        variant: sale
        template: "Sale"
      - id: either
        if: {{any: [{{before: 2021-01-01}}, {{utm_campaign: spring}}]}}
        variant: spring
        template: "Spring"
      - id: next-year
        if: {{after: 2020-01-01, before: 2999-01-01}}
        variant: later
        template: "Later"
""", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "personalize_mw.cli", "check", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: segment summer_sale_2020: its window ended 2020-09-01 00:00 CEST (Europe/Berlin); "
        "it never fires again",
        "warning: slots.hero.rules[0] (old-sale): its window ended 2020-09-01 00:00 CEST (Europe/Berlin); "
        "it never fires again",
    ]
