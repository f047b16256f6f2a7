"""The simulation's known truth, recovered by the lift and the report; the report opened in Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from personalize_mw.analytics import open_source
from personalize_mw.analytics.lift import corrected_tests
from personalize_mw.analytics.report import ReportData, collect, render
from personalize_mw.analytics.simulate import HOLDOUT, TRUE_EFFECTS, simulate, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportData]:
    path = tmp_path_factory.mktemp("sim") / "touchpoints.jsonl"
    write_jsonl(simulate(10_000, seed=7), path)
    data = collect(open_source([str(path)]), [path.name], goal="signup", holdout_share=HOLDOUT, truth=TRUE_EFFECTS)
    return path, data


def test_every_true_effect_is_inside_its_interval(simulated: tuple[Path, ReportData]) -> None:
    _, data = simulated
    rows = {row.key: row for row in data.lift}
    assert set(rows) == set(TRUE_EFFECTS)
    for key, effect in TRUE_EFFECTS.items():
        row = rows[key]
        assert row.abs_low <= effect <= row.abs_high, (key, effect, row.abs_low, row.abs_high)
        assert not row.srm and not row.small_sample, row.warnings
    # the effects that exist are detected, the one that does not is not
    for key, effect in TRUE_EFFECTS.items():
        assert (rows[key].abs_low > 0) == (effect > 0), key


def test_last_touch_credits_the_variant_without_effect(simulated: tuple[Path, ReportData]) -> None:
    _, data = simulated
    last = {row.key: row.credit["last"] for row in data.lift}
    assert max(last, key=last.__getitem__) == "hero:pricing"
    assert TRUE_EFFECTS["hero:pricing"] == 0
    # every model sees it, and every model shares out the same conversions
    totals = {model: sum(credit.values()) for model, credit in data.channel_credit.items()}
    assert len({round(total, 6) for total in totals.values()}) == 1
    html = render(data)
    assert "<b>hero:pricing</b> gets" in html  # the call-out names it


def test_report_is_self_contained_and_renders_in_chromium(simulated: tuple[Path, ReportData],
                                                          tmp_path: Path) -> None:
    _, data = simulated
    html = render(data)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "no external resource"
    report = tmp_path / "report.html"
    report.write_text(html, encoding="utf-8")
    requests: list[str] = []

    def block(route: Any) -> None:
        if route.request.url != report.as_uri():
            requests.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.route("**/*", block)
            page.goto(report.as_uri())
            for text in ("Who gets the credit, and what actually worked", "Attributed against causal",
                         "Causal lift: treatment against holdout", "Credit per channel under each model",
                         "Conversions over time", "Journey funnel", "hero:pricing", "Last touch",
                         "Each interval as of each day", "Progress toward the planned sample"):
                assert page.get_by_text(text).first.is_visible(), text
            boxes = page.eval_on_selector_all(
                "svg", "els => els.map(e => { const r = e.getBoundingClientRect(); "
                       "return [r.width, r.height, e.querySelectorAll('rect,line,circle,polyline,path').length]; })")
            assert len(boxes) == 4 + len(data.paths) and len(data.paths) == len(TRUE_EFFECTS)  # + a path each
            for width, height, shapes in boxes:
                assert width > 300 and height > 100 and shapes >= 4, boxes
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert requests == []
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_report_flags_a_sample_ratio_mismatch(simulated: tuple[Path, ReportData]) -> None:
    path, _ = simulated
    data = collect(open_source([str(path)]), [path.name], goal="signup", holdout_share={"hero": 0.3})
    html = render(data)
    flagged = {row.key for row in data.lift if row.srm}
    assert flagged == {key for key in TRUE_EFFECTS if key.startswith("hero:")}
    assert html.count('class="srm"') == len(flagged)
    assert "SAMPLE RATIO MISMATCH" in html and "<b style='color:#c2417a'>SRM</b>" in html


@pytest.fixture(scope="module")
def example_records(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(records, config): the example site's own few records, as a site owner has after trying the demo."""
    from tests.example_records import walk_example_site

    path = tmp_path_factory.mktemp("example") / "touchpoints.jsonl"
    return path, walk_example_site(path)


def test_report_on_the_example_sites_few_records(example_records: tuple[Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from personalize_mw.cli import main

    path, config = example_records
    out = tmp_path / "report.html"
    assert main(["report", str(path), "--config", str(config), "--out", str(out)]) == 0
    # what is configured: the shipped rules hold visitors out in two slots, whatever the rows
    said = capsys.readouterr().out
    assert "(2 experiment(s) with a holdout, from the configuration; 1 of " in said
    assert main(["report", str(path), "--out", str(tmp_path / "records.html")]) == 0
    assert "(2 experiment(s) with a holdout, from the records; " in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    assert "2 experiments with a holdout (from the configuration): pricing_cta, signup_headline." in html
    assert html.count('class="warn"') == 1 and 'class="srm"' not in html  # one box listing the rows
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            page.goto(out.as_uri())
            warn = page.locator(".warn")
            # three kinds of warning, rows listed: no holdout, small, and the config's guardrail (whitepaper)
            # that nobody in these few records downloaded
            assert warn.count() == 1 and warn.locator("li").count() == 3
            assert "no conversion of whitepaper by any experiment visitor" in warn.inner_text()
            assert "signup_headline:no-card" in warn.inner_text()
            # one day of records: the conversions chart shows a dot, not an empty frame
            daily = page.locator("#time svg")
            assert daily.locator("circle").count() >= 1 and daily.locator("polyline").count() == 0
            # the one variant with visitors in both arms: its interval over the one day, as a dot and a bar
            path_chart = page.locator("#over-time svg")
            assert path_chart.count() == 1 and path_chart.locator("circle").count() == 1
            # every bar's length is what its label says: zero has none, the rest in proportion
            bars = page.eval_on_selector_all(
                "#side-by-side td", "cells => cells.map(c => { const b = c.querySelector('.bar'); "
                "return [c.innerText.trim(), b ? b.getBoundingClientRect().width : 0]; })")
            drawn = [(float(text.replace(",", "")), width) for text, width in bars
                     if re.fullmatch(r"[\d.,]+", text)]
            assert any(v == 0 for v, _ in drawn) and any(0 < v < 1 for v, _ in drawn)  # "0.3", not "0"
            for value, width in drawn:
                assert (width == 0) == (value == 0), (value, width)
            scale = {round(width / value, 1) for value, width in drawn if value >= 1}
            assert max(scale) - min(scale) <= 60 / 2 * 0.5, scale  # in proportion (widths in whole px)
            page.screenshot(path=str(ARTIFACTS / "report_example_site.png"), full_page=True)
            # on a phone: nothing wider than the screen but the tables, which scroll in their own box
            page.set_viewport_size({"width": 390, "height": 800})
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
            rights = page.eval_on_selector_all("#over-time svg", "els => els.map(e => e.getBoundingClientRect().right)")
            assert rights and max(rights) <= 390
        finally:
            browser.close()


def test_report_shows_each_experiments_progress(simulated: tuple[Path, ReportData]) -> None:
    from personalize_mw.analytics import plan as planning

    _, data = simulated
    plans = {p.slot: p for p in data.progress}
    assert set(plans) == {"hero", "cta"} and data.unplanned == []
    html = render(data)
    for slot, p in plans.items():
        rows = [r for r in data.lift if r.slot == slot]
        holdout = sum(r.n_holdout for r in rows)
        assert p.seen_visitors == sum(r.n_treatment + r.n_holdout for r in rows)
        assert p.holdout_share == HOLDOUT  # the share given, not a default
        assert p.baseline == pytest.approx(sum(r.conv_holdout for r in rows) / holdout)
        tests = corrected_tests(data.lift)  # the readout corrects across them all: the plan is for as many
        assert p.comparisons == tests > 1
        assert p.visitors == planning.visitors_needed(p.baseline, 0.01, HOLDOUT, comparisons=tests)
        assert p.progress == pytest.approx(p.seen_visitors / p.visitors)
        assert f"<td>{slot}</td>" in html and f"<td>{p.seen_visitors:,}</td><td>{p.visitors:,}</td>" in html
        assert f'<span style="width:{100 * p.progress:.0f}%"></span></span>{p.progress:.0%}' in html


def test_the_interval_path_shows_a_novelty_effect(tmp_path: Path) -> None:
    """A variant that lifts sign-ups by 40 pp in its first week and not at all after: the daily path
    shows the early lift; the last interval alone would not."""
    import random
    from datetime import UTC, datetime, timedelta

    from personalize_mw.analytics.timeline import interval_paths

    rng = random.Random(3)
    start = datetime(2026, 10, 1, 9, tzinfo=UTC)
    records = []
    for i in range(2800):
        seen = start + timedelta(days=i / 100)  # 100 visitors a day for four weeks
        arm = "holdout" if i % 2 else "treatment"
        rate = 0.1 + (0.4 if arm == "treatment" and seen < start + timedelta(days=7) else 0.0)
        visitor = f"v{i}"
        records.append({"ts": seen.isoformat(), "type": "exposure", "visitor": visitor, "slot": "hero",
                        "variant": "new", "arm": arm, "experiment": "hero-1"})
        if rng.random() < rate:
            records.append({"ts": (seen + timedelta(minutes=5)).isoformat(), "type": "conversion",
                            "visitor": visitor, "goal": "signup"})
    path = tmp_path / "novelty.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    days = interval_paths(open_source([str(path)]))["hero:new"]
    assert len(days) == 29  # from 1 October, 9:00, for four weeks: 29 calendar days
    week, last = days[6], days[-1]
    assert week.low > 0.2  # after a week: clearly lifting, by about 40 pp
    assert last.lift < 0.15 and last.lift < week.low  # four weeks in: the lift has worn down to a quarter
    assert all(a.lift >= b.lift - 0.02 for a, b in zip(days[6:], days[7:], strict=False))  # and fell day by day


def test_report_shows_metrics_guardrails_and_breakdown_cells(simulated: tuple[Path, ReportData],
                                                              tmp_path: Path) -> None:
    import json

    from test_lift import world

    path, _ = simulated
    data = collect(open_source([str(path)]), [path.name], goals=["signup"], guardrails=["whitepaper"], by="channel",
                   holdout_share=HOLDOUT)
    html = render(data)
    assert [r.key for r in data.variants] == sorted(TRUE_EFFECTS) and {r.metric for r in data.variants} == {"signup"}
    assert "hero:linkedin channel=social · signup" in html and "hero:linkedin · whitepaper" in html
    small = [r for r in data.lift if r.small_cell]
    assert small and html.count("<td class=''>small</td>") == len(small)
    assert "guardrail dropped" not in html  # no variant of the simulation moves whitepaper downloads
    # A variant that halves them: the report says so in its table and in a red box.
    drop = tmp_path / "drop.jsonl"
    drop.write_text("".join(json.dumps(r) + "\n" for r in world(3000)))
    dropped = render(collect(open_source([str(drop)]), [drop.name], goals=["signup"], guardrails=["whitepaper"]))
    assert "<b>guardrail dropped</b>" in dropped
    assert re.search(r'<div class="srm">hero:pricing · whitepaper: GUARDRAIL DROPPED', dropped)


def test_chart_colours_follow_the_corrected_call_not_the_rows_own_interval() -> None:
    """A row whose own interval excludes zero but whose corrected p-value does not call it is drawn
    muted, in the forest plot and in its path by day, as the table does."""
    from personalize_mw.analytics import charts

    uncalled = charts.interval_plot([("hero:a", 0.07, 0.01, 0.13, None, 0)], label="x")
    called = charts.interval_plot([("hero:a", 0.07, 0.01, 0.13, None, 1)], label="x")
    assert charts.MUTED in uncalled and charts.PALETTE[2] not in uncalled
    assert charts.PALETTE[2] in called
    path = [("2026-11-01", 0.07, 0.01, 0.13)]
    assert charts.PALETTE[2] not in charts.interval_path(path, title="hero:a", label="x", call=0)
    assert charts.PALETTE[2] in charts.interval_path(path, title="hero:a", label="x", call=1)


def test_the_lift_section_names_the_intervals_and_the_correction_it_draws(simulated: tuple[Path, ReportData]) -> None:
    """It said 'Newcombe for the difference ... p from the two-proportion test' above a chart, colours and
    p column that are the always-valid interval and the corrected always-valid p."""
    path, _ = simulated
    for correction, said in (("holm", "Holm-adjusted"), ("bh", "Benjamini–Hochberg-adjusted")):
        data = collect(open_source([str(path)]), [path.name], goals=["signup"], guardrails=["whitepaper"],
                       by="channel", holdout_share=HOLDOUT, correction=correction)
        section = " ".join(render(data).split('<section id="lift">')[1].split("</section>")[0].split())
        tests = sum((r.p_adjusted is not None) + (r.revenue_p_adjusted is not None) for r in data.lift
                    if not r.same_as_whole)  # a lone channel of a variant is the variant's own test
        assert any(r.same_as_whole for r in data.lift)
        assert f"p {said} across the readout's {tests} tests" in section
        assert "p from the two-proportion test" not in section and "(95 % CI)" not in section
        assert "absolute lift, pp (always-valid 95 %)" in section
