"""Journey stages: the furthest stage that holds, one variant per stage, nothing the visitor already has."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import CORE_SECRET
from hypothesis import given, settings
from hypothesis import strategies as st

from personalize_mw.config import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.visitor import Profile
from personalize_mw.errors import ConfigError
from personalize_mw.rules.engine import compiled_slots
from personalize_mw.rules.seen import content_path, has_read, unread

NOW = 1_800_000_000.0
STAGES = [
    {"name": "awareness"},
    {"name": "consideration", "if": {"any": [{"visits": {"gte": 2}}, {"viewed": {"prefix": "/guides/"}}]}},
    {"name": "decision", "if": {"viewed": {"prefix": "/pricing"}}},
    {"name": "customer", "if": {"goal_completed": "purchase"}},
]


def cta(variant: str, **extra: Any) -> dict[str, Any]:
    return {"variant": variant, "template": f"<a>{variant}</a>", **extra}


SLOT = {
    "strategy": "journey",
    "stages": {
        "awareness": cta("read-guide", content="/guides/start"),
        "consideration": [cta("newsletter", goal="newsletter"), cta("see-pricing", content="/pricing")],
        "decision": cta("start-trial", goal="trial"),
        "customer": cta("refer-a-friend"),
    },
}


def compile_slots(slots: dict[str, Any], stages: list[dict[str, Any]] = STAGES) -> dict[str, Any]:
    config = load_config({"secret_keys": [CORE_SECRET], "sink": "jsonl:/dev/null",
                          "journey": {"stages": stages}, "slots": slots,
                          "goals": {"purchase": {"path": "/thanks"}, "trial": {"path": "/trial/ok"},
                                    "newsletter": {"path": "/subscribed"}}})
    return compiled_slots(config).slots


def ctx(path: str = "/") -> RequestContext:
    return RequestContext("GET", "http", "example.com", path, "", {"user-agent": "Mozilla/5.0 (X11)"})


def visitor(visits: int = 1, paths: list[str] | None = None, goals: list[str] | None = None) -> Profile:
    return Profile("v" * 22, visits=visits, first_seen=int(NOW), paths=paths or [], goals=goals or [])


@pytest.fixture(scope="module")
def journey() -> Any:
    return compile_slots({"cta": SLOT})["cta"]


def shown(journey: Any, profile: Profile | None) -> str | None:
    decision = journey.decide(ctx(), profile, NOW)
    return decision.variant if decision else None


def test_each_stage_shows_its_variant(journey: Any) -> None:
    assert shown(journey, visitor()) == "read-guide"
    assert shown(journey, visitor(visits=3)) == "newsletter"
    assert shown(journey, visitor(paths=["/pricing"])) == "start-trial"
    assert shown(journey, visitor(paths=["/pricing"], goals=["purchase"])) == "refer-a-friend"
    assert shown(journey, None) == "read-guide"  # no consent: only the unconditional stage
    assert journey.decide(ctx(), visitor(paths=["/pricing"]), NOW).variables == {"journey": {"stage": "decision"}}


def test_never_a_cta_for_a_completed_goal(journey: Any) -> None:
    # Subscribed already: the next variant of the stage; at decision with the trial done: nothing.
    assert shown(journey, visitor(visits=3, goals=["newsletter"])) == "see-pricing"
    assert shown(journey, visitor(paths=["/pricing"], goals=["trial"])) is None


def test_never_recommends_content_already_read(journey: Any) -> None:
    assert shown(journey, visitor(paths=["/blog/", "/guides/start/"])) != "read-guide"
    # consideration, newsletter done, pricing read ... but reading /pricing means decision: start-trial
    assert shown(journey, visitor(visits=3, goals=["newsletter"], paths=["/pricing?x=1"])) == "start-trial"


def test_a_chain_falls_back_when_the_stage_has_nothing_left() -> None:
    slot = dict(SLOT, strategy=["journey", "rules"], rules=[{"if": {"path_prefix": "/"}, "variant": "fallback",
                                                              "template": "f"}])
    chained = compile_slots({"cta": slot})["cta"]
    assert chained.decide(ctx(), visitor(paths=["/pricing"], goals=["trial"]), NOW).variant == "fallback"
    assert chained.decide(ctx(), visitor(paths=["/pricing"]), NOW).variant == "start-trial"


paths = st.lists(st.sampled_from(["/", "/guides/start", "/pricing", "/blog/a", "/guides/x"]), max_size=6)
goals = st.lists(st.sampled_from(["purchase", "trial", "newsletter"]), max_size=3, unique=True)


@settings(max_examples=300, deadline=None)
@given(visits=st.integers(1, 5), paths=paths, goals=goals)
def test_property_nothing_offered_is_already_had(journey: Any, visits: int, paths: list[str],
                                                 goals: list[str]) -> None:
    profile = visitor(visits, paths, goals)
    decision = journey.decide(ctx(), profile, NOW)
    if decision is None:
        return
    offered = {"read-guide": ("content", "/guides/start"), "newsletter": ("goal", "newsletter"),
               "see-pricing": ("content", "/pricing"), "start-trial": ("goal", "trial")}.get(decision.variant)
    if offered and offered[0] == "goal":
        assert offered[1] not in goals
    elif offered:
        assert offered[1] not in paths


def test_seen_helper_normalizes_links() -> None:
    profile = visitor(paths=["/a/", "/b?x=1"])
    assert content_path("https://example.com/a/?utm=1#top") == "/a"
    assert has_read(profile, "https://example.com/a") and has_read(profile, "/b") and not has_read(profile, "/c")
    assert unread(profile, ["/a", "/c", "/b/"], link=str) == ["/c"]
    assert unread(None, ["/a"], link=str) == ["/a"]


@pytest.mark.parametrize("stages, slot, message", [
    ([], SLOT, "define the stages"),
    (STAGES, dict(SLOT, stages={"nirvana": cta("x")}), "unknown stage 'nirvana'"),
    (STAGES + [{"name": "awareness"}], SLOT, "listed twice"),
    ([{"name": "a", "if": {"visits": {"bogus": 1}}}], dict(SLOT, stages={"a": cta("x")}), "bogus"),
])
def test_journey_mistakes_stop_start_up(stages: list[dict[str, Any]], slot: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        compile_slots({"cta": slot}, stages)


def test_a_preview_reaches_a_stage_or_a_variant(journey: Any) -> None:
    assert journey.preview(None, "decision").variant == "start-trial"
    assert journey.preview("see-pricing", None).variant == "see-pricing"
    assert journey.preview(None, "nowhere") is None and journey.preview("nope", None) is None


def test_templates_know_the_stage(tmp_path: Any) -> None:
    from personalize_mw.core.personalizer import Personalizer

    slot = {"strategy": "journey", "stages": {"awareness": cta("hello", template="<i>{{ journey.stage }}</i>")}}
    config = load_config({"secret_keys": [CORE_SECRET], "sink": f"jsonl:{tmp_path / 'tp.jsonl'}",
                          "journey": {"stages": STAGES}, "slots": {"cta": slot}})
    core = Personalizer(config)
    outcome = core.visit(ctx(), b"<!-- personalize:cta -->x<!-- /personalize:cta -->", NOW)
    assert outcome.body == b"<!-- personalize:cta --><i>awareness</i><!-- /personalize:cta -->"
    core.queue.close()
