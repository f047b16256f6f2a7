"""The crowd strategy: co-reading learned from page views, never a page already read, cold start, decay."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from personalize_mw import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.visitor import Profile
from personalize_mw.errors import ConfigError
from personalize_mw.rules.crowd import VIEWS, CrowdStrategy, co_key
from personalize_mw.rules.engine import compiled_slots

KEY = "k" * 16
PAGES = [f"/blog/post-{i}" for i in range(30)]
LIST = "{% for item in items %}<a href='{{ item.url }}'>{{ item.title }}</a>{% endfor %}"


def crowd_config(**options: Any) -> dict[str, Any]:
    crowd = {"count": 3, "paths": ["/blog/"], "template": LIST,
             "catalog": [{"url": p, "title": f"Post {p[-2:]}", "tags": ["t"]} for p in PAGES], **options}
    return {"secret_keys": [KEY], "slots": {"related": {"strategy": "crowd", "crowd": crowd}}}


def strategy_of(config: dict[str, Any]) -> CrowdStrategy:
    found = compiled_slots(load_config(config)).slots["related"].strategies[0]
    assert isinstance(found, CrowdStrategy)
    return found


def ctx(path: str) -> RequestContext:
    return RequestContext("GET", "http", "example.com", path, "", {"user-agent": "Mozilla/5.0"})


def read(crowd: CrowdStrategy, visitor: Profile, path: str, now: float = 1.8e9, body: bytes | None = None) -> None:
    """A page view as the personalizer sees it: the path joins the profile, then the strategy learns."""
    visitor.paths.append(path)
    crowd.observe_page(ctx(path), visitor, body, now)


def urls(decision: Any) -> list[str]:
    return [item["url"] for item in decision.variables["items"]] if decision is not None else []


def test_people_who_read_this_also_read() -> None:
    crowd = strategy_of(crowd_config())
    for i in range(5):  # five readers of post-1 went on to post-2, two to post-3
        reader = Profile(f"r{i}")
        read(crowd, reader, "/blog/post-1")
        read(crowd, reader, "/blog/post-2")
        if i < 2:
            read(crowd, reader, "/blog/post-3")
    crowd.store.flush()
    newcomer = Profile("new")
    newcomer.paths.append("/blog/post-1")
    decision = crowd.decide("related", newcomer, ctx("/blog/post-1"), 1.8e9)
    assert urls(decision)[:2] == ["/blog/post-2", "/blog/post-3"]
    assert decision.variables["items"][0] == {"title": "Post -2", "url": "/blog/post-2", "tags": ["t"]}
    assert decision.variant == "crowd" and decision.rule_id == "related.crowd"


def test_a_reload_is_not_a_new_co_reading_and_anonymous_reading_is_not_counted() -> None:
    crowd = strategy_of(crowd_config())
    reader = Profile("r")
    read(crowd, reader, "/blog/post-1")
    read(crowd, reader, "/blog/post-2")
    read(crowd, reader, "/blog/post-1")
    crowd.observe_page(ctx("/blog/post-9"), None, None, 1.8e9)
    read(crowd, reader, "/about")  # outside paths: not counted
    crowd.store.flush()
    backend = crowd.store.backend
    assert set(backend.read(VIEWS)) == {"/blog/post-1", "/blog/post-2"}
    assert set(backend.read(co_key("/blog/post-1"))) == {"/blog/post-2"}


def test_cold_start_falls_back_to_most_viewed_and_nothing_at_all_is_no_decision() -> None:
    crowd = strategy_of(crowd_config(fallback=[]))
    assert crowd.decide("related", Profile("x"), ctx("/blog/post-0"), 1.8e9) is None
    for i, path in enumerate(["/blog/post-5"] * 3 + ["/blog/post-6"] * 2 + ["/blog/post-7"]):
        read(crowd, Profile(f"p{i}"), path)
    crowd.store.flush()
    crowd.store.invalidate()  # the empty answer above is cached for a second
    decision = crowd.decide("related", Profile("x"), ctx("/blog/post-0"), 1.8e9)
    assert urls(decision) == ["/blog/post-5", "/blog/post-6", "/blog/post-7"]


def test_a_first_visitor_on_a_new_site_sees_the_catalog_then_the_fallback_tops_up_the_most_viewed() -> None:
    crowd = strategy_of(crowd_config())  # no `fallback:`: the YAML catalog in the order written
    visitor = Profile("first", paths=["/blog/post-1"])
    assert urls(crowd.decide("related", visitor, ctx("/blog/post-0"), 1.8e9)) == [
        "/blog/post-2", "/blog/post-3", "/blog/post-4"]  # neither the current page nor one read
    listed = strategy_of(crowd_config(fallback=["/blog/post-9/", "/not-in-the-catalog", "/blog/post-0",
                                                "/blog/post-8"]))
    read(listed, Profile("other"), "/blog/post-5")
    listed.store.flush()
    # Most viewed first, then the list (compared without trailing slash; only catalog pages).
    assert urls(listed.decide("related", Profile("x"), ctx("/blog/post-0"), 1.8e9)) == [
        "/blog/post-5", "/blog/post-9", "/blog/post-8"]


def test_older_co_reading_fades() -> None:
    crowd = strategy_of(crowd_config(half_life_days=1))
    day = 86400.0
    for i in range(4):  # long ago, many readers went from post-1 to post-2
        reader = Profile(f"old{i}")
        read(crowd, reader, "/blog/post-1", now=1.8e9)
        read(crowd, reader, "/blog/post-2", now=1.8e9)
    reader = Profile("recent")  # ten days later, one reader to post-3
    read(crowd, reader, "/blog/post-1", now=1.8e9 + 10 * day)
    read(crowd, reader, "/blog/post-3", now=1.8e9 + 10 * day)
    crowd.store.flush()
    assert urls(crowd.decide("related", Profile("n"), ctx("/blog/post-1"), 1.8e9 + 10 * day))[0] == "/blog/post-3"


def test_titles_are_learned_from_pages_without_a_catalog() -> None:
    config = crowd_config()
    del config["slots"]["related"]["crowd"]["catalog"]
    crowd = strategy_of(config)
    reader = Profile("r")
    read(crowd, reader, "/blog/a", body=b"<html><head><title>\n  Caf&eacute; &amp; tea </title></head>")
    read(crowd, reader, "/blog/b", body=b"<html><head></head><body>no title</body></html>")
    crowd.store.flush()
    decision = crowd.decide("related", Profile("n"), ctx("/blog/b"), 1.8e9)
    assert decision.variables["items"] == [{"title": "Café & tea", "url": "/blog/a", "tags": []}]


# Many visitors reading at random, then any visitor on any page: never a page they have read.
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), history=st.lists(st.sampled_from(PAGES), min_size=0, max_size=12),
       here=st.sampled_from(PAGES))
def test_crowd_never_returns_what_the_visitor_has_read(seed: int, history: list[str], here: str) -> None:
    crowd = strategy_of(crowd_config(count=5, fallback=[]))  # what the crowd alone fills
    rng = random.Random(seed)
    for i in range(40):
        reader = Profile(f"r{i}")
        for path in rng.sample(PAGES, rng.randint(1, 8)):
            read(crowd, reader, path)
    crowd.store.flush()
    visitor = Profile("me", paths=[*history, here])
    shown = urls(crowd.decide("related", visitor, ctx(here), 1.8e9))
    assert not set(shown) & set(visitor.paths)
    assert len(shown) == len(set(shown)) <= 5
    # The list is filled as far as pages read by others and not by this visitor allow.
    viewed = set(crowd.store.backend.read(VIEWS))
    assert len(shown) == min(5, len(viewed - set(visitor.paths)))


@pytest.mark.parametrize("options, message", [
    ({"count": 0}, "count"),
    ({"template": None}, "template"),
    ({"catalog": [{"title": "no url"}]}, "url"),
    ({"bogus": 1}, "unknown crowd option"),
    ({"fallback": [1]}, "fallback"),
])
def test_bad_options_stop_start_up(options: dict[str, Any], message: str) -> None:
    config = crowd_config(**options)
    config["slots"]["related"]["crowd"] = {k: v for k, v in config["slots"]["related"]["crowd"].items()
                                           if v is not None}
    with pytest.raises(ConfigError, match=message):
        load_config(config)


def test_read_pages_are_recognised_with_a_query_or_a_trailing_slash() -> None:
    crowd = strategy_of(crowd_config(fallback=[]))
    for i in range(3):
        reader = Profile(f"r{i}")
        read(crowd, reader, "/blog/post-1")
        read(crowd, reader, "/blog/post-2/")
        read(crowd, reader, "/blog/post-3")
    crowd.store.flush()
    assert set(crowd.store.backend.read(co_key("/blog/post-1"))) == {"/blog/post-2", "/blog/post-3"}
    visitor = Profile("me", paths=["/blog/post-2?utm_source=news", "/blog/post-1/"])
    assert urls(crowd.decide("related", visitor, ctx("/blog/post-1/"), 1.8e9)) == ["/blog/post-3"]


def test_titles_are_never_learned_from_a_request_with_a_query_nor_outside_title_paths() -> None:
    config = crowd_config()
    del config["slots"]["related"]["crowd"]["catalog"]
    config["slots"]["related"]["crowd"]["title_paths"] = ["/blog/"]
    crowd = strategy_of(config)
    attacker = Profile("a")
    attacker.paths.append("/blog/search")
    crowd.observe_page(RequestContext("GET", "http", "example.com", "/blog/search", "q=Buy+cheap+pills",
                                      {"user-agent": "Mozilla/5.0"}), attacker,
                       b"<title>Buy cheap pills</title>", 1.8e9)
    read(crowd, attacker, "/about", body=b"<title>About</title>")  # counted (paths: /), not a title path
    read(crowd, attacker, "/blog/real", body=b"<title>A real post</title>")
    assert "/blog/search" not in crowd.catalog.items and "/about" not in crowd.catalog.items
    assert crowd.catalog.items["/blog/real"]["title"] == "A real post"


def test_a_learned_title_is_learned_again_after_an_hour_not_pinned_forever() -> None:
    config = crowd_config()
    del config["slots"]["related"]["crowd"]["catalog"]
    crowd = strategy_of(config)
    reader = Profile("r")
    read(crowd, reader, "/blog/a", now=1.8e9, body=b"<title>First</title>")
    read(crowd, Profile("s"), "/blog/a", now=1.8e9 + 60, body=b"<title>Changed</title>")
    assert crowd.catalog.items["/blog/a"]["title"] == "First"  # not re-read on every view
    read(crowd, Profile("t"), "/blog/a", now=1.8e9 + 3601, body=b"<title>Changed</title>")
    assert crowd.catalog.items["/blog/a"]["title"] == "Changed"
