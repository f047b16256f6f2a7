"""The example site's crowd and bandit slots, as a visitor meets them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient
from test_example_site import accept, records, site_yaml, slot

from example_site.app import create_app

TEARDOWN = "/blog/pricing-page-teardown"
METRICS = "/blog/activation-metrics"
ATTRIBUTION = "/blog/attribution-without-third-parties"


def state_store(app: Any) -> Any:
    layer = app.middleware_stack
    while not hasattr(layer, "core"):
        layer = layer.app
    return layer.core.slots["related"].strategies[0].store


def shown(related: str) -> list[str]:
    return re.findall(r'<li><a href="([^"]+)"', related)


def test_readers_of_this_post_also_read_and_never_what_you_read(tmp_path: Path) -> None:
    config, sink = site_yaml(tmp_path)
    app = create_app(config)
    with TestClient(app) as first:
        accept(first)
        # Nothing learned yet: the catalog, in the order personalize.yaml lists it.
        assert shown(slot(first.get(METRICS).text, "related")) == [TEARDOWN, ATTRIBUTION]
        first.get(ATTRIBUTION)
    store = state_store(app)
    store.flush()  # the background writer would within half a second
    store.invalidate()  # and the cached "nothing yet" would expire within a second
    with TestClient(app) as second:
        accept(second)
        related = slot(second.get(METRICS).text, "related")
        assert "Readers of this post also read" in related
        assert shown(related) == [ATTRIBUTION, TEARDOWN]  # what the first reader read next comes first
        second.get(ATTRIBUTION)
        # Every post read: no box, the page's own link.
        assert "More from the blog" in slot(second.get(TEARDOWN).text, "related")


def test_the_pricing_bandit_shows_one_sticky_variant_to_a_consenting_visitor(tmp_path: Path) -> None:
    config, sink = site_yaml(tmp_path)
    with TestClient(create_app(config)) as client:
        accept(client)
        shown = {slot(client.get("/pricing").text, "pricing_cta") for _ in range(3)}
    assert len(shown) == 1
    exposures = [r for r in records(sink) if r["type"] == "exposure" and r["slot"] == "pricing_cta"]
    assert len(exposures) == 3 and len({(r["variant"], r["arm"]) for r in exposures}) == 1
    assert exposures[0]["arm"] in {"treatment", "holdout"} and exposures[0]["experiment"] == "pricing_cta"
    if exposures[0]["arm"] == "treatment":
        assert exposures[0]["variant"] in {"trial", "demo", "no-card"}
