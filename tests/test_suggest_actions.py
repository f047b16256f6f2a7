"""``suggest actions``: each variant's action from the always-valid readout, as a patch that applies and loads."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from personalize_mw.analytics.lift import ArmCounts, LiftRow, Outcomes, readout_rows
from personalize_mw.analytics.plan import plan, visitors_needed
from personalize_mw.analytics.simulate import TRUE_EFFECTS, simulate, write_jsonl
from personalize_mw.analytics.suggest_actions import Action, decide, diff, load_problem, patched
from personalize_mw.cli import main
from personalize_mw.config import Rule, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "example_site"


def _site(tmp_path: Path) -> Path:
    """A copy of the example config with its template files, to patch."""
    shutil.copy(EXAMPLE / "personalize.yaml", tmp_path / "personalize.yaml")
    shutil.copytree(EXAMPLE / "variants", tmp_path / "variants")
    return tmp_path / "personalize.yaml"


def _apply(tmp_path: Path, patch: str) -> str:
    """Applies ``patch`` with patch -p0 in ``tmp_path``, as a person would; the patched text."""
    (tmp_path / "change.patch").write_text(patch, encoding="utf-8")
    subprocess.run(["patch", "-p0", "--dry-run", "-i", "change.patch"], cwd=tmp_path, check=True,
                   capture_output=True)
    subprocess.run(["patch", "-p0", "-i", "change.patch"], cwd=tmp_path, check=True, capture_output=True)
    return (tmp_path / "personalize.yaml").read_text(encoding="utf-8")


def _arm(rng: random.Random, n: int, rate: float) -> ArmCounts:
    return ArmCounts(visitors=n, converted=sum(rng.random() < rate for _ in range(n)))


def _drawn(rng: random.Random, cells: dict[str, tuple[int, float, float]]) -> Outcomes:
    """Outcomes of binomial draws with a known truth: cell -> (visitors per arm, holdout rate, true lift)."""
    whole = Outcomes()
    for value, (n, base, lift) in cells.items():
        cell = Outcomes(treatment=_arm(rng, n, base + lift), holdout=_arm(rng, n, base))
        whole.cells[value] = cell
        whole.treatment.merge(cell.treatment)
        whole.holdout.merge(cell.holdout)
    return whole


def _actions(found: dict[tuple[str, str], Outcomes], *, by: str | None = None) -> dict[str, Action]:
    if by is None:
        for out in found.values():
            out.cells.clear()
    rows = readout_rows({"signup": found}, by=by)
    plans = {slot: plan(slot, baseline=0.1, daily_visitors=1000, holdout_share=0.5, mde=0.02)
             for slot in {s for s, _ in found}}
    return {a.row.key: a for a in decide(rows, plans, metric="signup")}


def test_simulated_site_positive_promoted_null_not_and_patch_applies(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    config = _site(tmp_path)
    write_jsonl(simulate(20_000, seed=7), tmp_path / "sim.jsonl")
    monkeypatch.chdir(tmp_path)  # the patch names the config as given: patch -p0 from here
    assert main(["suggest", "actions", "sim.jsonl", "--config", "personalize.yaml", "--goal", "signup",
                 "--out", "out.patch"]) == 0
    summary = capsys.readouterr().err
    calls = {line.split()[1].rstrip(":"): line.split()[0] for line in summary.splitlines()
             if line.split()[0] in ("promote", "stop", "retire", "target", "keep")}
    assert TRUE_EFFECTS["hero:switcher"] > 0 and calls["hero:switcher"] == "promote"
    assert TRUE_EFFECTS["hero:pricing"] == 0 and calls["hero:pricing"] != "promote"
    assert "correlation" not in summary
    before = config.read_text(encoding="utf-8")
    after = _apply(tmp_path, (tmp_path / "out.patch").read_text(encoding="utf-8"))
    assert load_config(config).slots["hero"].holdout == 0.05
    assert "# promoted switcher: +" in after and "always-valid 95 %" in after
    kept = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert all(line in after.splitlines() for line in kept)  # the author's comments stay


def test_harmful_stopped_null_after_plan_retired_and_rules_removed(tmp_path: Path) -> None:
    rng = random.Random(3)
    planned = visitors_needed(0.1, 0.02, 0.5)
    assert planned is not None
    found = {("hero", "reviews"): _drawn(rng, {"all": (4000, 0.10, -0.05)}),
             ("hero", "linkedin"): _drawn(rng, {"all": (planned, 0.10, 0.0)}),
             ("cta", "sales"): _drawn(rng, {"all": (300, 0.10, 0.0)})}
    actions = _actions(found)
    assert actions["hero:reviews"].kind == "stop"
    assert actions["hero:linkedin"].kind == "retire"
    assert actions["cta:sales"].kind == "keep"  # short of its planned sample: no call either way
    config = _site(tmp_path)
    text = config.read_text(encoding="utf-8")
    _apply(tmp_path, diff(text, patched(text, list(actions.values()), permanent_holdout=0.05), "personalize.yaml"))
    variants = [rule.variant for rule in load_config(config).slots["hero"].rules]
    assert "reviews" not in variants and "linkedin" not in variants and "switcher" in variants
    assert [r.variant for r in load_config(config).slots["cta"].rules] == [
        r.variant for r in load_config(EXAMPLE / "personalize.yaml").slots["cta"].rules]


def _hero_rules_after(tmp_path: Path, actions: dict[str, Action]) -> dict[str, Rule]:
    """The example site's hero rules by variant, once the patch of ``actions`` is applied and loaded."""
    config = _site(tmp_path)
    text = config.read_text(encoding="utf-8")
    _apply(tmp_path, diff(text, patched(text, list(actions.values()), permanent_holdout=0.05), "personalize.yaml"))
    return {rule.variant: rule for rule in load_config(config).slots["hero"].rules}


def test_helps_in_one_cell_hurts_in_another_narrows_the_rule(tmp_path: Path) -> None:
    rng = random.Random(5)
    found = {("hero", "linkedin"): _drawn(rng, {"mobile": (3000, 0.1, 0.08), "desktop": (3000, 0.1, -0.08)}),
             ("hero", "pricing"): _drawn(rng, {"mobile": (3000, 0.1, 0.08), "desktop": (3000, 0.1, -0.08)})}
    actions = _actions(found, by="device")
    assert actions["hero:linkedin"].kind == "target" and actions["hero:linkedin"].helped == ["mobile"]
    rules = _hero_rules_after(tmp_path, actions)
    assert rules["linkedin"].if_ == {"all": ["linkedin_campaign", {"device": {"in": ["mobile"]}}]}
    assert rules["pricing"].if_ == {"all": [{"all": ["pricing_intent", {"not": "customer"}]},
                                            {"device": {"in": ["mobile"]}}]}


def test_fifty_seeds_null_rarely_promoted_powered_positive_mostly() -> None:
    """The readout's error rates carried into the action, on binomial draws. The positive one is sized by plan
    for 95 % power. At plan's 90 % these seeds promote it in 40 of 50, seeds 0-199 in 81.5 %, seeds 200-999
    in 90.2 %: the size's exact power is 90.1 %, and the first seeds happen to draw low. The properties at
    plan's 90 %, on the simulator: tests/test_loop_properties.py."""
    lift = 0.03
    n = visitors_needed(0.1, lift, 0.5, power=0.95)
    assert n is not None
    null = positive = 0
    for seed in range(50):
        rng = random.Random(seed)
        # each its own readout: the plan sizes for one comparison, no correction across rows
        positive += _actions({("hero", "linkedin"): _drawn(rng, {"all": (n // 2, 0.1, lift)})})[
            "hero:linkedin"].kind == "promote"
        null += _actions({("hero", "pricing"): _drawn(rng, {"all": (n // 2, 0.1, 0.0)})})[
            "hero:pricing"].kind == "promote"
    assert null <= 2  # 5 % of 50 seeds
    assert positive >= 43  # 85 %


def test_a_torn_record_or_a_missing_file_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _site(tmp_path)
    (tmp_path / "torn.jsonl").write_text('{"type": "exposure", "ts"\n', encoding="utf-8")
    for inputs in ("torn.jsonl", "missing.jsonl"):
        assert main(["suggest", "actions", str(tmp_path / inputs), "--config", str(config)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("suggest actions: ") and "Traceback" not in err


def _called(kind: str, slot: str, variant: str) -> Action:
    return Action(kind, LiftRow(slot, variant, None, 4000, 200, 4000, 400, 0.05, 0.1), "-5.00 pp", "")


def test_stopping_a_slots_last_variants_leaves_a_config_that_loads(tmp_path: Path) -> None:
    config = _site(tmp_path)
    text = config.read_text(encoding="utf-8")
    actions = [_called("stop", "signup_headline", "speed"), _called("retire", "signup_headline", "no-card")]
    after = _apply(tmp_path, diff(text, patched(text, actions, permanent_holdout=0.05), "personalize.yaml"))
    slot = load_config(config).slots["signup_headline"]
    assert slot.variants == [] and slot.holdout == 0.1  # the slot shows its default
    assert "    variants: []   # none left: variants removed by suggest actions" in after.splitlines()
    assert "# stopped speed: -5.00 pp" in after and "# retired no-card: -5.00 pp" in after


def test_stopping_the_only_rule_written_flush_with_its_key_leaves_a_config_that_loads(tmp_path: Path) -> None:
    (tmp_path / "personalize.yaml").write_text(
        "secret_keys: [a-key-for-the-test-only-0123456789]\n"
        "slots:\n"
        "  hero:\n"
        "    rules:   # one rule\n"
        "    - if: {device: mobile}\n"
        "      variant: small\n"
        "      template: <p>small</p>\n"
        "    holdout: 0.5\n"
        "    experiment: hero-test\n", encoding="utf-8")
    text = (tmp_path / "personalize.yaml").read_text(encoding="utf-8")
    patch = diff(text, patched(text, [_called("stop", "hero", "small")], permanent_holdout=0.05), "personalize.yaml")
    after = _apply(tmp_path, patch)
    assert "    rules: []   # one rule" in after.splitlines()
    assert load_config(tmp_path / "personalize.yaml").slots["hero"].rules == []


def test_a_patch_the_config_would_not_load_with_is_said(tmp_path: Path) -> None:
    config = _site(tmp_path)
    text = config.read_text(encoding="utf-8")
    assert load_problem(text, str(config)) is None
    # two of the bandit's three variants stopped: a bandit needs two, which is for the author to settle
    left = patched(text, [_called("stop", "pricing_cta", "trial"), _called("stop", "pricing_cta", "demo")],
                   permanent_holdout=0.05)
    problem = load_problem(left, str(config))
    assert problem is not None and "bandit needs at least two" in problem


def test_targeted_values_are_quoted_so_yaml_reads_them_as_written(tmp_path: Path) -> None:
    """Norway's NO (or a channel named on) would be a boolean bare in YAML: the patch quotes each value."""
    rng = random.Random(5)
    found = {("hero", "linkedin"): _drawn(rng, {"NO": (3000, 0.1, 0.08), "SE": (3000, 0.1, -0.08)})}
    actions = _actions(found, by="country")
    assert actions["hero:linkedin"].kind == "target" and actions["hero:linkedin"].helped == ["NO"]
    rules = _hero_rules_after(tmp_path, actions)
    assert rules["linkedin"].if_ == {"all": ["linkedin_campaign", {"country": {"in": ["NO"]}}]}


def test_a_slot_named_like_a_nested_key_is_found_at_the_slots_level() -> None:
    from personalize_mw.analytics.yaml_text import slot_block

    lines = ["slots:", "  hero:", "    rules:", "      - variant: a", "  rules:", "    holdout: 0.1"]
    assert slot_block(lines, "rules") == (4, 6)
