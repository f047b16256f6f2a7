"""The example site's journey slot and its headline experiment, with the shipped YAML."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient
from test_example_site import accept, records, site_yaml, slot

from example_site.app import create_app


def next_step(client: TestClient) -> str:
    return slot(client.get("/blog").text, "next_step")


def test_the_next_step_follows_the_journey_and_never_repeats_what_is_done(tmp_path: Path) -> None:
    config, sink = site_yaml(tmp_path)
    with TestClient(create_app(config)) as client:
        assert "/blog/activation-metrics" in next_step(client)  # no consent: the first stage
        accept(client, "/blog")
        assert "/blog/activation-metrics" in next_step(client)  # awareness
        client.get("/blog/activation-metrics")
        assert "/blog/activation-metrics" not in next_step(client)  # read: not recommended again
        client.get("/blog/pricing-page-teardown")
        assert "Read the 2025 benchmark" in next_step(client)  # consideration
        client.get("/whitepaper/download")
        assert "See the plans" in next_step(client)  # the benchmark is done: the next offer
        client.get("/pricing")
        assert "Start your 14-day trial" in next_step(client)  # decision
        client.post("/signup", data={"email": "ada@example.com", "company": "Ada Ltd", "plan": "team"})
        step = next_step(client)
        assert "Invite a teammate" in step and "/signup" not in step  # customer: no trial offer
    shown = [(r["variant"], r["rule"]) for r in records(sink) if r["type"] == "exposure" and r["slot"] == "next_step"]
    assert [v for v, _ in shown] == ["start-here", "start-here", "benchmark", "see-pricing", "trial", "invite"]
    assert shown[0][1] == "next_step.awareness.start-here"


# With 10% held out, no visitor of 100 is held out once in 0.9^-100 ≈ 37,000 runs;
# with 40 it was once in 67 (a gate hit it).
VISITORS = 100


def test_the_signup_headline_is_an_experiment_with_a_holdout(tmp_path: Path) -> None:
    config, sink = site_yaml(tmp_path)
    arms: dict[str, set[str]] = {}
    headlines = []
    with TestClient(create_app(config)) as client:
        html = client.get("/signup").text
        assert "<h1>Start your 14-day trial</h1>" in slot(html, "signup_headline")  # no consent
        for _ in range(VISITORS):
            client.cookies.clear()
            accept(client, "/signup")
            first = slot(client.get("/signup").text, "signup_headline")
            assert slot(client.get("/signup").text, "signup_headline") == first  # sticky
            headlines.append(first)
    exposures = [r for r in records(sink) if r["type"] == "exposure" and r["slot"] == "signup_headline"]
    assert all(r["experiment"] == "signup-headline-2026-11" for r in exposures)
    for r in exposures:
        arms.setdefault(r["arm"], set()).add(r["variant"])
    assert arms["unenrolled"] == {None}
    assert arms["treatment"] == {"speed", "no-card"}
    by_visitor = {}
    for r in exposures:
        if r["visitor"]:
            by_visitor.setdefault(r["visitor"], set()).add((r["arm"], r["variant"]))
    assert len(by_visitor) == VISITORS and all(len(v) == 1 for v in by_visitor.values())
    held = [r for r in exposures if r["arm"] == "holdout"]
    assert all(r["variant"] in ("speed", "no-card") for r in held)
    assert held, f"no holdout among {VISITORS} visitors (p = 0.9^{VISITORS}): the holdout is not applied"
    shown = {r["visitor"]: r for r in exposures if r["arm"] == "holdout"}
    assert len(shown) == len(held) / 2  # each holdout visitor: two page views, two exposures
    assert sum("Start your 14-day trial" in h for h in headlines) == len(shown)  # they saw the default
