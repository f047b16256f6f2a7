"""End to end: example_site under uvicorn on a loopback port, walked in headless Chromium.

The visitor accepts the banner, reads the pricing page twice, comes back to a
home page whose hero already is the pricing variant in the HTML the server sent
(no client script, no flicker), signs up, and never sees the trial offer nor
"Picking a plan?" again. On a phone's 375 px the navigation keeps to its lines.
SIGTERM then stops uvicorn, whose lifespan shutdown must flush the JSONL sink.
`make test` installs Debian's chromium; this test is never skipped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "example_site"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PRICING_HERO = "Picking a plan? Team is 49 € a month, all-in."
DEFAULT_HERO = "Revenue analytics for B2B teams"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(tmp_path: Path) -> tuple[Path, Path]:
    """The shipped rules with the sink in tmp_path; (config, sink)."""
    data = yaml.safe_load((SITE / "personalize.yaml").read_text(encoding="utf-8"))
    sink = tmp_path / "touchpoints.jsonl"
    data["sink"] = f"jsonl:{sink}"
    data["base_dir"] = str(SITE)
    # The longest interval the schema allows: the background writer stays idle
    # during the walk, so the records reach the file through the shutdown flush.
    data["delivery"] = {**data.get("delivery", {}), "flush_interval_s": 60, "shutdown_timeout_s": 10}
    config = tmp_path / "personalize.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return config, sink


def wait_for_port(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server accepts connections (uvicorn listens only after the lifespan startup)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the server exited with {server.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the server did not listen on port {port}:\n{log.read_text()}")


# How each framework's version of the site is served, on a free port; the Flask and Django
# commands are those of `make demo-flask` and `make demo-django` but for the port.
SERVERS = {
    "starlette": ["-m", "uvicorn", "example_site.app:app", "--host", "127.0.0.1", "--port", "{port}",
                  "--lifespan", "on"],
    "flask": ["-m", "flask", "--app", "example_site.flask_app", "run", "--port", "{port}"],
    "django": ["example_site/django_site/manage.py", "runserver", "{port}", "--noreload"],
}


def serve(framework: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    config, sink = write_config(tmp_path)
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "EXAMPLE_SITE_CONFIG": str(config)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *(arg.format(port=port) for arg in SERVERS[framework])],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process, log)
        yield {"base": f"http://127.0.0.1:{port}", "process": process, "sink": sink, "log": log}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield from serve("starlette", tmp_path)


@pytest.fixture(params=["flask", "django"])
def wsgi_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield from serve(request.param, tmp_path)


def records(sink: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sink.read_text(encoding="utf-8").splitlines()]


def walk(page: Page, base: str) -> None:
    first = page.goto(base + "/")
    assert first is not None and first.status == 200
    banner = page.locator("#consent-banner")
    expect(banner).to_be_visible()
    expect(page.locator(".hero h1")).to_have_text(DEFAULT_HERO)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "example_site_home_first_visit.png"))
    assert "pmw_id" not in {c["name"] for c in page.context.cookies()}

    banner.get_by_role("button", name="Accept").click()
    page.wait_for_url(base + "/")
    expect(banner).to_have_count(0)
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["pmw_id"]["httpOnly"] and cookies["pmw_id"]["sameSite"] == "Lax"
    assert cookies["pmw_consent"]["value"] == "analytics=1&personalization=1&advertising=0"

    for _ in range(2):
        page.get_by_role("link", name="Pricing", exact=True).click()
        page.wait_for_url(base + "/pricing")
        expect(page.locator("h1")).to_have_text("Simple pricing, per workspace")

    page.get_by_role("link", name="AcmeAnalytics").click()
    page.wait_for_url(base + "/")
    expect(page.locator(".hero h1")).to_have_text(PRICING_HERO)
    # No flicker: the variant is in the HTML as sent, not put there by a script.
    home = page.goto(base + "/")
    assert home is not None
    html = home.text()
    assert PRICING_HERO in html and f"<h1>{DEFAULT_HERO}</h1>" not in html
    assert "private" in home.headers["cache-control"]

    page.locator(".cta").get_by_role("link", name="Start a free trial").click()
    page.wait_for_url(base + "/signup")
    page.get_by_label("Work email").fill("ada@example.com")
    page.get_by_label("Company").fill("Ada Analytics Ltd")
    page.get_by_label("Plan").select_option("team")
    page.get_by_role("button", name="Create my workspace").click()
    page.wait_for_url(base + "/thanks?plan=team")
    expect(page.get_by_role("heading", name="Thanks for signing up!")).to_be_visible()
    expect(page.locator(".cta")).to_contain_text("Invite your team")

    page.goto(base + "/")
    expect(page.locator(".hero h1")).to_have_text(DEFAULT_HERO)  # no "Picking a plan?" once they picked one
    expect(page.locator(".cta")).to_contain_text("Invite your team")
    expect(page.get_by_text("Start a free trial")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "example_site_home_after_signup.png"), full_page=True)


def in_chromium(base: str) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # JavaScript off: the banner, the consent and the variants all work without it.
            context = browser.new_context(java_script_enabled=False)
            walk(context.new_page(), base)
            context.close()
        finally:
            browser.close()


def assert_the_walk_was_recorded(lines: list[dict[str, Any]]) -> None:
    assert lines[0]["type"] == "pageview" and lines[0]["visitor"] is None  # before the banner was answered
    identified = lines[1:]
    assert len({r["visitor"] for r in identified}) == 1 and identified[0]["visitor"] is not None
    pageviews = [r["path"] for r in identified if r["type"] == "pageview"]
    assert pageviews == ["/", "/pricing", "/pricing", "/", "/", "/signup", "/thanks", "/"]
    exposures = [(r["path"], r["slot"], r["variant"]) for r in identified if r["type"] == "exposure"]
    assert exposures.count(("/", "hero", "pricing")) == 2
    assert ("/thanks", "cta", "customer") in exposures and ("/", "cta", "customer") in exposures
    conversions = [(r["goal"], r["value"], r["path"]) for r in identified if r["type"] == "conversion"]
    assert conversions == [("signup", 150, "/thanks")]
    assert all(r["consent"] == {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
               for r in identified)


def test_visitor_journey_in_chromium(server: dict[str, Any]) -> None:
    base, process, sink, log = server["base"], server["process"], server["sink"], server["log"]
    in_chromium(base)
    process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once shut down gracefully, so -SIGTERM is a clean exit too.
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    output = log.read_text()
    assert "Application shutdown complete" in output
    assert "not written at shutdown" not in output
    assert_the_walk_was_recorded(records(sink))


def test_the_same_journey_under_flask_and_django(wsgi_server: dict[str, Any]) -> None:
    """Their development servers, as `make demo-flask` and `make demo-django` run them (Django checks CSRF)."""
    in_chromium(wsgi_server["base"])
    process = wsgi_server["process"]
    process.send_signal(signal.SIGINT)  # Ctrl-C: the servers exit, and the records are written at exit
    assert process.wait(timeout=60) == 0, wsgi_server["log"].read_text()
    assert_the_walk_was_recorded(records(wsgi_server["sink"]))


# The header on a phone: the brand on one line, the nav on one line below it, no link broken
# across lines, nothing wider than the screen. Measured as the browser lays it out.
MEASURE_HEADER = """() => {
  const box = e => e.getBoundingClientRect();
  const header = document.querySelector('header.top'), nav = header.querySelector('nav');
  const links = [...nav.querySelectorAll('a')];
  return {
    header: box(header).height,
    brand: box(header.querySelector('.brand')).height,
    brandTop: box(header.querySelector('.brand')).top,
    nav: box(nav).height, navTop: box(nav).top,
    line: parseFloat(getComputedStyle(nav).lineHeight),
    linkTops: links.map(a => Math.round(box(a).top)),
    fragments: links.map(a => a.getClientRects().length),
    scrollWidth: document.documentElement.scrollWidth,
  };
}"""


@pytest.mark.parametrize("width, lines", [(375, 2), (1280, 1)])
def test_the_navigation_keeps_to_its_lines(server: dict[str, Any], width: int, lines: int) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 740})
            ARTIFACTS.mkdir(exist_ok=True)
            page.goto(server["base"] + "/blog")
            m = page.evaluate(MEASURE_HEADER)
            page.screenshot(path=str(ARTIFACTS / f"example_site_header_{width}px.png"))
        finally:
            browser.close()
    assert m["fragments"] == [1, 1, 1], m  # no link ("Benchmark report") broken across lines
    assert len(set(m["linkTops"])) == 1 and m["nav"] < 1.5 * m["line"], m  # the nav is one line
    assert m["scrollWidth"] <= width, m  # nothing sticks out sideways
    if lines == 1:
        assert abs(m["navTop"] + m["nav"] / 2 - (m["brandTop"] + m["brand"] / 2)) <= 2, m  # side by side
    else:
        assert m["navTop"] >= m["brandTop"] + m["brand"], m  # the nav under the brand
    # The header is as tall as its lines, its row gap (6 px) and padding (2 x 10 px), not more.
    tallest = 64 if lines == 1 else m["brand"] + 6 + m["nav"] + 20
    assert m["header"] <= tallest + 0.5, m
