"""Experiments: deterministic assignment, holdout and unenrolled arms, stability under edits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from conftest import CORE_SECRET

from personalize_mw.config import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.rules.engine import compiled_slots
from personalize_mw.rules.experiment import choose, in_holdout, unit
from personalize_mw.rules.protocol import VariantSpec

IDS = [f"visitor-{i:06d}" for i in range(100_000)]
CONSENT = "pmw_consent=analytics=1&personalization=1&advertising=0"
PAGE = b"<h1>Hi</h1><!-- personalize:hero --><p>default</p><!-- /personalize:hero -->"


def variants(**weights: float) -> list[VariantSpec]:
    return [VariantSpec(name, f"hero.{name}", weight, None, b"") for name, weight in weights.items()]  # type: ignore[arg-type]


def assign(specs: list[VariantSpec], ids: list[str] = IDS, salt: str = "exp-1") -> list[str]:
    return [choose(specs, i, "hero", salt).variant for i in ids]


def chi_square(observed: Counter[str], expected: dict[str, float]) -> float:
    return sum((observed[k] - e) ** 2 / e for k, e in expected.items())


def test_spread_of_100000_ids_matches_the_weights() -> None:
    weights = {"a": 1.0, "b": 1.0, "c": 2.0}
    counts = Counter(assign(variants(**weights)))
    total = sum(weights.values())
    expected = {k: len(IDS) * w / total for k, w in weights.items()}
    # df = 2: P(chi2 > 13.82) = 0.001. A biased hash or a wrong weighting lands far above.
    assert chi_square(counts, expected) < 13.82, counts
    held = Counter(in_holdout(i, "hero", "exp-1", 0.1) for i in IDS)
    assert chi_square(held, {True: 10_000, False: 90_000}) < 10.83, held  # df = 1, p = 0.001


def test_salt_and_slot_give_independent_assignments() -> None:
    first = assign(variants(a=1, b=1), IDS[:20_000], "exp-1")
    second = assign(variants(a=1, b=1), IDS[:20_000], "exp-2")
    same = sum(x == y for x, y in zip(first, second))
    assert 9_500 < same < 10_500  # about half, as for independent coins
    assert unit("v", "hero", "s", "a") != unit("v", "other", "s", "a")


def test_assignment_is_the_same_in_another_process() -> None:
    code = ("import json, sys\n"
            "from personalize_mw.rules.experiment import choose, in_holdout\n"
            "from personalize_mw.rules.protocol import VariantSpec\n"
            "specs = [VariantSpec(n, n, w, None, b'') for n, w in (('a', 1.0), ('b', 1.0), ('c', 2.0))]\n"
            "ids = [f'visitor-{i:06d}' for i in range(2000)]\n"
            "print(json.dumps([[choose(specs, i, 'hero', 'exp-1').variant, in_holdout(i, 'hero', 'exp-1', 0.1)]"
            " for i in ids]))\n")
    # A different hash seed: Python's own hash() would differ between these processes.
    env = {"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    here = [[choose(variants(a=1, b=1, c=2), i, "hero", "exp-1").variant, in_holdout(i, "hero", "exp-1", 0.1)]
            for i in IDS[:2000]]
    assert json.loads(out) == here


def test_changing_a_weight_moves_visitors_only_to_or_from_that_arm() -> None:
    ids = IDS[:30_000]
    before = assign(variants(a=1, b=1, c=1), ids)
    after = assign(variants(a=1, b=3, c=1), ids)  # b weighs more
    moved = [(x, y) for x, y in zip(before, after) if x != y]
    assert moved and all(y == "b" for _, y in moved)  # only into b
    assert Counter(after)["b"] / len(ids) == pytest.approx(0.6, abs=0.01)
    less = assign(variants(a=1, b=0.5, c=1), ids)  # b weighs less: only b's visitors leave
    assert all(x == "b" for x, y in zip(before, less) if x != y)


def test_adding_a_variant_only_takes_visitors_into_it() -> None:
    ids = IDS[:30_000]
    before = assign(variants(a=1, b=1), ids)
    after = assign(variants(a=1, b=1, new=1), ids)
    assert all(y == "new" for x, y in zip(before, after) if x != y)
    assert Counter(after)["new"] / len(ids) == pytest.approx(1 / 3, abs=0.01)
    # order in the YAML does not matter either
    assert assign(variants(new=1, b=1, a=1), ids) == after


def test_raising_the_holdout_only_adds_visitors_to_it() -> None:
    small = {i for i in IDS[:30_000] if in_holdout(i, "hero", "e", 0.05)}
    large = {i for i in IDS[:30_000] if in_holdout(i, "hero", "e", 0.10)}
    assert small < large


# ---------------------------------------------------------------- through the core


def core_for(tmp_path: Path, **slot: Any) -> Personalizer:
    config = {"secret_keys": [CORE_SECRET], "sink": f"jsonl:{tmp_path / 'tp.jsonl'}",
              "delivery": {"flush_interval_s": 0.05},
              "slots": {"hero": {"variants": [{"variant": "a", "template": "<p>A</p>"},
                                              {"variant": "b", "template": "<p>B</p>", "weight": 3}], **slot}}}
    return Personalizer(load_config(config))


def request(core: Personalizer, cookie: str | None) -> tuple[Any, str | None]:
    headers = {"user-agent": "Mozilla/5.0 (X11)"}
    if cookie:
        headers["cookie"] = cookie
    outcome = core.visit(RequestContext("GET", "http", "example.com", "/", "", headers), PAGE, time.time())
    id_cookie = next((c for c in outcome.cookies if c.name == "pmw_id"), None)
    return outcome, id_cookie.value if id_cookie else None


def exposures(outcome: Any) -> list[dict[str, Any]]:
    return [r for r in outcome.records if r["type"] == "exposure"]


def test_holdout_visitors_see_the_default_and_are_recorded_with_the_would_be_variant(tmp_path: Path) -> None:
    core = core_for(tmp_path, holdout=0.5, experiment="hero-2026")
    arms: dict[str, list[Any]] = {"holdout": [], "treatment": []}
    for _ in range(40):
        outcome, id_value = request(core, CONSENT)
        (record,) = exposures(outcome)
        arms[record["arm"]].append((outcome, id_value, record))
        assert record["experiment"] == "hero-2026"
        assert record["holdout_share"] == 0.5  # both arms: what lift checks the split against
    assert arms["holdout"] and arms["treatment"]
    for outcome, id_value, record in arms["holdout"]:
        assert outcome.body is None  # the page as the app made it
        assert record["variant"] in ("a", "b") and record["rule"] == f"hero.{record['variant']}"
        # sticky: the same visitor comes back to the same arm and the same would-be variant
        again, _ = request(core, f"{CONSENT}; pmw_id={id_value}")
        assert exposures(again)[0]["arm"] == "holdout" and exposures(again)[0]["variant"] == record["variant"]
    for outcome, id_value, record in arms["treatment"]:
        assert f"<p>{record['variant'].upper()}</p>".encode() in outcome.body
    core.queue.close()


def test_holdout_exposures_are_committed_though_the_body_was_not_rewritten(tmp_path: Path) -> None:
    core = core_for(tmp_path, holdout=0.5)
    while True:
        outcome, _ = request(core, CONSENT)
        if exposures(outcome)[0]["arm"] == "holdout":
            break
    core.commit(outcome, rewritten=outcome.body is not None)
    core.queue.close()
    written = [json.loads(line) for line in (tmp_path / "tp.jsonl").read_text().splitlines()]
    assert [(r["type"], r["arm"], r["experiment"]) for r in written] == [("pageview", None, None),
                                                                         ("exposure", "holdout", "hero")]


def test_visitors_without_an_id_are_unenrolled(tmp_path: Path) -> None:
    core = core_for(tmp_path, holdout=0.1)
    outcome, id_value = request(core, None)  # no consent: no id
    assert id_value is None and outcome.body is None
    (record,) = exposures(outcome)
    assert record["holdout_share"] is None  # not part of the experiment
    assert (record["arm"], record["variant"], record["experiment"], record["visitor"]) == \
        ("unenrolled", None, "hero", None)
    # A rule that fires on the request alone still shows, recorded as unenrolled too.
    core = core_for(tmp_path, holdout=0.1, strategy=["rules", "split"],
                    rules=[{"if": {"path": "/"}, "variant": "home", "template": "<p>H</p>"}])
    outcome, _ = request(core, None)
    assert b"<p>H</p>" in outcome.body and exposures(outcome)[0]["arm"] == "unenrolled"
    core.queue.close()


def test_a_slot_without_experiment_records_null_experiment(tmp_path: Path,
                                                           make_core_config: Callable[..., dict]) -> None:
    config = make_core_config(slots={"hero": {"rules": [{"if": {"path": "/"}, "variant": "v", "template": "V"}]}})
    core = Personalizer(load_config(config))
    outcome, _ = request(core, CONSENT)
    assert [(r["arm"], r["experiment"], r["holdout_share"]) for r in exposures(outcome)] == [("treatment", None, None)]
    assert compiled_slots(core.config).slots["hero"].experiment is None
    core.queue.close()
