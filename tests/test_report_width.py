"""The report's lift table fits a 1200 px window; in a narrower one it scrolls with its row names in view."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from personalize_mw.analytics import open_source
from personalize_mw.analytics.report import collect, render
from personalize_mw.analytics.simulate import HOLDOUT, TRUE_EFFECTS, simulate, write_jsonl
from tests.test_report import CHROMIUM, CHROMIUM_ARGS

# The table's width and its container's, and after scrolling the container fully right, how far the first
# row's name sits from the container's left edge.
MEASURE = """() => {
    const table = document.querySelector('#lift table'), box = table.parentElement;
    box.scrollLeft = box.scrollWidth;
    const name = table.querySelector('tbody td').getBoundingClientRect().left;
    return [table.scrollWidth, box.clientWidth, name - box.getBoundingClientRect().left];
}"""


@pytest.fixture(scope="module")
def widest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The widest lift table the simulation gives: two metrics, a cell per channel, long names, the truth."""
    folder = tmp_path_factory.mktemp("width")
    write_jsonl(simulate(10_000, seed=7), folder / "sim.jsonl")
    data = collect(open_source([str(folder / "sim.jsonl")]), ["sim.jsonl"], goals=["signup"],
                   guardrails=["whitepaper"], by="channel", holdout_share=HOLDOUT, truth=TRUE_EFFECTS)
    assert max(len(r.label) for r in data.lift) > 30
    (folder / "report.html").write_text(render(data), encoding="utf-8")
    return folder / "report.html"


def test_the_lift_table_fits_1200_px_and_keeps_its_row_names_in_view_when_narrower(widest: Path) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(widest.as_uri())
            table, box, _ = page.evaluate(MEASURE)
            assert table <= box, (table, box)  # no horizontal scrolling at 1200 px
            page.set_viewport_size({"width": 600, "height": 900})
            table, box, name = page.evaluate(MEASURE)
            assert table > box and name >= 0, (table, box, name)  # scrolled, and the names stay (sticky)
        finally:
            browser.close()
