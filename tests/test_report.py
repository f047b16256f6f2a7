"""The simulation's known truth, recovered by the lift and the report; the report opened in Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from personalize_mw.analytics import open_source
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
                         "Conversions over time", "Journey funnel", "hero:pricing", "Last touch"):
                assert page.get_by_text(text).first.is_visible(), text
            boxes = page.eval_on_selector_all(
                "svg", "els => els.map(e => { const r = e.getBoundingClientRect(); "
                       "return [r.width, r.height, e.querySelectorAll('rect,line,circle,polyline,path').length]; })")
            assert len(boxes) == 4
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
