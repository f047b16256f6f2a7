"""Causal lift: the statistics against published and hand-computed values, and the records walk."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from personalize_mw.analytics import readout
from personalize_mw.analytics.lift import (
    ANY,
    checked_share,
    lift,
    newcombe_difference,
    outcomes,
    readout_rows,
    relative_lift,
    significant,
    srm_chi_square,
    two_proportion_p,
    wilson_interval,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def ts(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def exposure(visitor: str, minutes: float, arm: str, slot: str = "hero", variant: str = "pricing",
             channel: str | None = "direct") -> dict[str, Any]:
    return {"type": "exposure", "visitor": visitor, "ts": ts(minutes), "slot": slot, "variant": variant,
            "arm": arm, "experiment": f"{slot}-exp", "channel": channel}


def conversion(visitor: str | None, minutes: float, goal: str = "signup") -> dict[str, Any]:
    return {"type": "conversion", "visitor": visitor, "ts": ts(minutes), "goal": goal, "value": 150}


def test_wilson_matches_newcombe_1998_example() -> None:
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


@pytest.mark.parametrize("x1,n1,x0,n0,expected", [
    (56, 70, 48, 80, (0.0524, 0.3339)),   # Newcombe (1998), table II, method 10
    (9, 10, 3, 10, (0.1705, 0.8090)),
])
def test_newcombe_difference_matches_published_intervals(x1: int, n1: int, x0: int, n0: int,
                                                         expected: tuple[float, float]) -> None:
    d, low, high = newcombe_difference(x1, n1, x0, n0)
    assert d == pytest.approx(x1 / n1 - x0 / n0)
    assert (round(low, 4), round(high, 4)) == expected


def test_p_value_and_relative_lift_by_hand() -> None:
    # 60/500 against 40/500: pooled 0.1, se = sqrt(0.1*0.9*2/500) = 0.018974, z = 2.1082
    assert two_proportion_p(60, 500, 40, 500) == pytest.approx(0.035015, abs=1e-6)
    # ratio 1.5; se(log) = sqrt(1/60 - 1/500 + 1/40 - 1/500) = 0.194079
    point, low, high = relative_lift(60, 500, 40, 500)
    assert point == pytest.approx(0.5)
    assert low == pytest.approx(1.5 * math.exp(-1.959964 * 0.194079) - 1, abs=1e-5)
    assert high == pytest.approx(1.5 * math.exp(1.959964 * 0.194079) - 1, abs=1e-5)
    assert relative_lift(5, 100, 0, 100) is None  # no ratio against a zero holdout rate


def test_srm_chi_square_by_hand() -> None:
    # 5200/4800 against 50/50: (200^2/5000) * 2 = 16, p = P(chi2_1 > 16) = 6.33e-5
    stat, p = srm_chi_square(5200, 4800, 0.5)
    assert stat == pytest.approx(16.0)
    assert p == pytest.approx(6.334e-5, rel=1e-3)
    # 10 % holdout, exactly on target
    assert srm_chi_square(900, 100, 0.1) == (0.0, 1.0)


def test_outcomes_window_arm_and_same_request() -> None:
    records = [
        exposure("a", 0, "treatment"), conversion("a", 10),            # converts
        exposure("b", 0, "treatment"), conversion("b", 0),             # same request: not caused
        exposure("c", 0, "treatment"), conversion("c", 31 * 24 * 60),  # outside 30 days
        exposure("d", 5, "holdout"), conversion("d", 2),               # before the exposure
        exposure("e", 5, "holdout"), conversion("e", 50), exposure("e", 60, "treatment"),  # first arm holds
        exposure("f", 5, "unenrolled"), conversion("f", 6),            # outside the experiment
        conversion(None, 7),
    ]
    out = outcomes(records)[("hero", "pricing")]
    assert (out.treatment.visitors, out.treatment.converted) == (3, 1)
    assert (out.holdout.visitors, out.holdout.converted) == (2, 1)
    assert out.experiment == "hero-exp"
    longer = outcomes(records, window_days=40)[("hero", "pricing")]
    assert longer.treatment.converted == 2
    assert outcomes(records, goal="whitepaper")[("hero", "pricing")].treatment.converted == 0


def synthetic(n: int, holdout_share: float, p_treat: float, p_hold: float, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    records = []
    for i in range(n):
        arm = "holdout" if rng.random() < holdout_share else "treatment"
        records.append(exposure(f"v{i}", i, arm))
        if rng.random() < (p_treat if arm == "treatment" else p_hold):
            records.append(conversion(f"v{i}", i + 30))
    return records


CHANNELS = (("social", 0.4), ("organic", 0.5), ("direct", 0.1))


def world(n: int, seed: int = 1, signup_effect: dict[str, float] | None = None, whitepaper_effect: float = -0.10,
          variant: str = "pricing", prefix: str = "w") -> list[dict[str, Any]]:
    """Visitors of three channels, half held out. The truth: sign-up 10 % plus ``signup_effect`` of the
    treated visitor's channel (default +10 pp on social, nothing elsewhere); whitepaper 20 % plus
    ``whitepaper_effect`` for the treated; each visitor read 0-4 pages before the exposure."""
    effects = {"social": 0.10} if signup_effect is None else signup_effect
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    for i in range(n):
        v = f"{prefix}{seed}-{i}"
        channel = rng.choices([c for c, _ in CHANNELS], [w for _, w in CHANNELS])[0]
        treated = rng.random() < 0.5
        records += [{"type": "pageview", "visitor": v, "ts": ts(i + k / 10)} for k in range(rng.randint(0, 4))]
        records.append(exposure(v, i + 0.5, "treatment" if treated else "holdout", variant=variant,
                                channel=channel))
        if rng.random() < 0.10 + (effects.get(channel, 0.0) if treated else 0.0):
            records.append(conversion(v, i + 1))
        if rng.random() < 0.20 + (whitepaper_effect if treated else 0.0):
            records.append(conversion(v, i + 2, goal="whitepaper"))
    return records


def test_lift_row_from_records() -> None:
    rows = lift(synthetic(4000, 0.5, 0.15, 0.10), holdout_share=0.5)
    (row,) = rows
    assert row.key == "hero:pricing"
    assert row.n_treatment + row.n_holdout == 4000
    assert row.abs_low < 0.05 < row.abs_high
    assert row.abs_low > 0 and row.p_value < 0.001
    assert row.rel_low < row.rel_lift < row.rel_high
    assert not row.srm and not row.small_sample and row.warnings == []


def test_srm_flag_triggers_on_a_skewed_split() -> None:
    # configured 50 % holdout, but only ~40 % of visitors landed there
    (row,) = lift(synthetic(4000, 0.4, 0.1, 0.1), holdout_share=0.5)
    assert row.srm and row.srm_p < 1e-6
    assert any("SAMPLE RATIO MISMATCH" in w for w in row.warnings)
    (fine,) = lift(synthetic(4000, 0.4, 0.1, 0.1), holdout_share=0.4)
    assert not fine.srm
    (per_slot,) = lift(synthetic(4000, 0.4, 0.1, 0.1), holdout_share={"hero": 0.5})
    assert per_slot.srm


def test_small_sample_warning() -> None:
    (row,) = lift(synthetic(60, 0.5, 0.2, 0.1), min_sample=100)
    assert row.small_sample and any("small sample" in w for w in row.warnings)
    assert row.srm_p is None  # no configured share: not checked


def test_duckdb_outcomes_match_the_python_walk(tmp_path) -> None:
    import json

    from personalize_mw.analytics import open_source
    from personalize_mw.analytics.lift import outcomes_sql

    records = [
        exposure("a", 0, "treatment"), conversion("a", 10),
        exposure("b", 0, "treatment"), conversion("b", 0),
        exposure("c", 0, "treatment"), conversion("c", 31 * 24 * 60),
        exposure("d", 5, "holdout"), conversion("d", 2),
        exposure("e", 5, "holdout"), conversion("e", 50, goal="whitepaper"), exposure("e", 60, "treatment"),
        exposure("f", 5, "unenrolled"), conversion("f", 6), conversion(None, 7),
    ] + synthetic(500, 0.3, 0.2, 0.1) + world(1500, seed=5)
    records.append({**exposure("g", 1, "treatment"), "channel": None})  # a cell of its own: (none)
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    con = open_source([str(path)])
    for goal in (None, "signup", "whitepaper"):
        for window in (30.0, 40.0):
            for by in (None, "channel"):
                sql = outcomes_sql(con, window_days=window, goal=goal, by=by)
                assert sql == outcomes(records, window_days=window, goal=goal, by=by)
    cells = outcomes_sql(con, by="channel")[("hero", "pricing")].cells
    assert {"direct", "social", "organic", "(none)"} <= set(cells)
    # The readout the CLI prints (several goals, a guardrail, cells) is the same from either path.
    metrics = (None, "signup", "whitepaper")
    from_sql = readout_rows({g or ANY: outcomes_sql(con, goal=g, by="channel") for g in metrics}, by="channel",
                            guardrails=["whitepaper"], holdout_share=0.3)
    assert from_sql == readout_rows({g or ANY: outcomes(records, goal=g, by="channel") for g in metrics},
                                    by="channel", guardrails=["whitepaper"], holdout_share=0.3)
    # lift() walks the records for the same metrics: no goal (any), then the guardrail.
    assert readout_rows({g or ANY: outcomes_sql(con, goal=g, by="channel") for g in (None, "whitepaper")},
                        by="channel", guardrails=["whitepaper"], holdout_share=0.3) == lift(
        records, guardrails=["whitepaper"], by="channel", holdout_share=0.3)
    assert len(from_sql) == 3 * (1 + len(cells))


def _downstream_experiment(visitors: int, seed: int) -> list[dict]:
    """One experiment on the cta slot: 'benchmark' first; treated visitors, who saw its link,
    become whitepaper readers (and so eligible for 'demo') three times as often."""
    import random

    rng = random.Random(seed)
    records = []
    for i in range(visitors):
        v, arm = f"v{i}", ("treatment" if rng.random() < 0.5 else "holdout")
        records.append(exposure(v, 0, arm, slot="cta", variant="benchmark"))
        if rng.random() < (0.3 if arm == "treatment" else 0.1):
            records.append(exposure(v, 60, arm, slot="cta", variant="demo"))
    return records


def test_a_visitor_counts_once_per_experiment_under_their_first_variant() -> None:
    records = _downstream_experiment(4000, 1)
    rows = {r.key: r for r in lift(records, holdout_share=0.5)}
    # Counting demo's visitors again would compare arms on a group the treatment made
    # (a mismatch of 3:1); counted once, every visitor is benchmark's, and splits are fair.
    assert set(rows) == {"cta:benchmark"}
    assert rows["cta:benchmark"].n_treatment + rows["cta:benchmark"].n_holdout == 4000
    assert not rows["cta:benchmark"].srm


def test_sample_ratio_checks_are_corrected_across_rows() -> None:
    # Five fair splits and one at p ~ 8e-4: chance among six checks, not a broken assignment.
    records = []
    for k, (treated, held) in enumerate([(573, 692), (600, 610), (590, 600), (610, 590), (605, 600), (595, 600)]):
        for i in range(treated + held):
            records.append(exposure(f"{k}-{i}", 0, "treatment" if i < treated else "holdout", variant=f"v{k}"))
    holm = {r.key: r for r in lift(records, holdout_share=0.5)}
    none = {r.key: r for r in lift(records, holdout_share=0.5, correction="none")}
    assert holm["hero:v0"].srm_p < 0.001 < holm["hero:v0"].srm_p_adjusted
    assert not holm["hero:v0"].srm and none["hero:v0"].srm
    assert any("SAMPLE RATIO MISMATCH" in w for w in none["hero:v0"].warnings)


def test_several_goals_one_row_per_metric() -> None:
    records = world(4000)
    rows = lift(records, goals=["signup", "whitepaper"], holdout_share=0.5)
    assert [(r.metric, r.key) for r in rows] == [("signup", "hero:pricing"), ("whitepaper", "hero:pricing")]
    # Each metric's counts are what a readout of that goal alone counts.
    for row in rows:
        (alone,) = lift(records, goal=row.metric)
        assert (row.conv_treatment, row.conv_holdout, row.n_treatment) == (alone.conv_treatment, alone.conv_holdout,
                                                                          alone.n_treatment)
        assert row.revenue_lift == pytest.approx(alone.revenue_lift)  # revenue of that goal's conversions
    (anything,) = lift(records)
    assert anything.metric == ANY and anything.conv_holdout > rows[0].conv_holdout
    assert all(r.guardrail is None and r.breakdown is None for r in rows)


def test_one_correction_across_every_metric_variant_and_cell() -> None:
    records = world(3000) + world(3000, seed=2, variant="linkedin", signup_effect={}, whitepaper_effect=0.0)
    rows = lift(records, goals=["signup", "whitepaper"], by="channel", holdout_share=0.5)
    assert len(rows) == 2 * 2 * (1 + 3)  # metrics x variants x (all visitors + three channels)
    tests = [r.seq_p_value for r in rows if r.seq_p_value is not None]
    tests += [r.revenue_p_value for r in rows if r.revenue_p_value is not None]
    expected = sorted(readout.holm(tests))
    assert sorted([r.p_adjusted for r in rows] + [r.revenue_p_adjusted for r in rows
                                                   if r.revenue_p_adjusted is not None]) == expected
    alone = lift(records, goal="signup", holdout_share=0.5)
    assert rows[0].p_adjusted > alone[0].p_adjusted  # more tests in the family: a larger adjustment
    bh = lift(records, goals=["signup", "whitepaper"], by="channel", correction="bh")
    family = [r.seq_p_value for r in bh] + [r.revenue_p_value for r in bh]  # every row has revenue here
    assert [r.p_adjusted for r in bh] + [r.revenue_p_adjusted for r in bh] == readout.benjamini_hochberg(family)


def test_breakdown_recovers_the_effect_of_each_channel() -> None:
    # +10 pp on social only: the social cell helps, the organic one cannot be told from zero.
    rows = lift(world(8000), goal="signup", by="channel", holdout_share=0.5)
    cells = {r.breakdown["value"]: r for r in rows if r.breakdown is not None}
    whole = next(r for r in rows if r.breakdown is None)
    assert whole.label == "hero:pricing" and cells["social"].label == "hero:pricing channel=social"
    assert all(r.breakdown == {"by": "channel", "value": c} for c, r in cells.items())
    assert sum(r.n_treatment for r in cells.values()) == whole.n_treatment
    assert sum(r.conv_holdout for r in cells.values()) == whole.conv_holdout
    assert significant(cells["social"]) == 1 and significant(cells["organic"]) == 0
    for channel, row in cells.items():
        truth = {"social": 0.10}.get(channel, 0.0)
        assert row.seq_abs_low <= truth <= row.seq_abs_high


def test_small_cells_are_small_not_significant() -> None:
    # A huge effect on direct (+60 pp), but only ~100 of its visitors: said to be small.
    rows = lift(world(1000, signup_effect={"direct": 0.6}), goal="signup", by="channel", min_sample=100)
    direct = next(r for r in rows if r.breakdown == {"by": "channel", "value": "direct"})
    assert direct.small_sample and direct.small_cell and direct.p_adjusted < 0.05
    assert significant(direct) == 0
    whole = next(r for r in rows if r.breakdown is None)
    assert not whole.small_cell


def test_guardrail_flags_a_drop_and_only_a_drop() -> None:
    # The variant lifts sign-ups and halves whitepaper downloads (20 % -> 10 %).
    rows = lift(world(3000), goal="signup", guardrails=["whitepaper"], holdout_share=0.5)
    signup, whitepaper = rows
    assert signup.guardrail is None and significant(signup) == 1
    assert whitepaper.metric == "whitepaper" and whitepaper.guardrail is True
    assert whitepaper.warnings[0].startswith("GUARDRAIL DROPPED: whitepaper")
    # A guardrail that rose is not flagged; nor is one that did not move.
    (rose,) = lift(world(3000, whitepaper_effect=0.1), goal="whitepaper", guardrails=["whitepaper"])
    assert rose.guardrail is False and significant(rose) == 1
    (signup_guard,) = lift(world(3000), guardrails=["signup"], goals=["signup"])
    assert signup_guard.guardrail is False


def test_guardrail_false_alarms_stay_under_five_percent() -> None:
    # 300 readouts of a variant with no effect on the guardrail (and +10 pp on social sign-ups):
    # flagged only when the corrected always-valid interval says it dropped.
    flagged = sum(lift(world(600, seed=seed, whitepaper_effect=0.0), goal="signup", guardrails=["whitepaper"],
                       by="channel")[4].guardrail is True for seed in range(300))
    assert flagged / 300 <= 0.05


def test_breakdown_by_an_unrecorded_field_is_refused() -> None:
    with pytest.raises(ValueError, match="records carry channel, device, country"):
        lift(world(10), by="utm")


def test_breakdowns_by_device_and_country_agree_in_both_paths(tmp_path) -> None:
    import json

    from personalize_mw.analytics import open_source
    from personalize_mw.analytics.lift import outcomes_sql

    records = world(1500, seed=5)
    rng = random.Random(3)
    for r in records:  # what schema 4's exposures carry; older ones have neither: (none)
        if r["type"] == "exposure":
            r["device"], r["country"] = rng.choice(["desktop", "mobile", None]), rng.choice(["DE", "US"])
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    con = open_source([str(path)])
    for by in ("device", "country"):
        assert outcomes_sql(con, by=by) == outcomes(records, by=by)
    cells = outcomes(records, by="device")[("hero", "pricing")].cells
    assert set(cells) == {"desktop", "mobile", "(none)"}
    rows = lift(records, by="country", holdout_share=0.5)
    assert {r.breakdown["value"] for r in rows if r.breakdown} == {"DE", "US"}
    assert sum(r.n_treatment for r in rows if r.breakdown) == next(r for r in rows if not r.breakdown).n_treatment


def test_the_simulation_readout_by_metric_and_channel_covers_the_truth() -> None:
    from personalize_mw.analytics.simulate import TRUE_EFFECTS, simulate

    # The simulator's variants move sign-ups only (TRUE_EFFECTS); whitepaper downloads depend on the persona.
    rows = lift(simulate(4000, seed=3), goals=["signup"], guardrails=["whitepaper"], by="channel",
                holdout_share=0.5)
    signup = [r for r in rows if r.metric == "signup" and not r.small_cell and r.seq_interval is not None]
    assert {r.key for r in signup if r.breakdown is None} == set(TRUE_EFFECTS)
    for row in signup:  # within a variant the effect is the same in every channel
        assert row.seq_abs_low <= TRUE_EFFECTS[row.key] <= row.seq_abs_high, row.label
    guard = [r for r in rows if r.metric == "whitepaper"]
    assert guard and all(r.guardrail is False for r in guard)
    assert not any(r.srm for r in rows)
    assert {r.breakdown["value"] for r in rows if r.key == "hero:linkedin" and r.breakdown} == {"social"}


def test_the_split_is_checked_against_the_recorded_share_and_a_change_is_said(tmp_path) -> None:
    import json

    from personalize_mw.analytics import open_source
    from personalize_mw.analytics.lift import outcomes_sql

    records = synthetic(400, 0.5, 0.2, 0.1)
    for r in records:
        r["holdout_share"] = 0.5
    (row,) = lift(records)
    assert row.holdout_share == 0.5 and row.srm_p is not None and not row.warnings
    for r in records[: len(records) // 2]:  # the holdout was raised half-way: no one share to check against
        r["holdout_share"] = 0.3
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    found = outcomes(records)
    assert found == outcomes_sql(open_source([str(path)]))
    assert found[("hero", "pricing")].recorded_shares == {0.3, 0.5}
    (row,) = lift(records)
    assert row.srm_p is None and any("changed during the experiment (recorded 0.3, 0.5)" in w for w in row.warnings)


def test_checked_share_prefers_the_given_share_and_says_a_conflict() -> None:
    assert checked_share(None, set()) == (None, None)
    assert checked_share(None, {0.2}) == (0.2, None)
    assert checked_share(0.2, {0.2}) == (0.2, None)
    assert checked_share(0.2, set()) == (0.2, None)
    share, problem = checked_share(0.5, {0.2})
    assert share == 0.5 and problem is not None and "given 0.5" in problem and "recorded 0.2" in problem


@pytest.mark.parametrize(("n1", "x0", "n0"), [(65, 1, 60), (12, 3, 16), (5000, 40, 5000)])
def test_a_treatment_without_conversions_keeps_its_relative_lift_inside_its_interval(n1: int, x0: int,
                                                                                     n0: int) -> None:
    # Haldane's +0.5 made the interval's low end -99 % around a point estimate of -100 %.
    found = relative_lift(0, n1, x0, n0)
    assert found is not None
    point, low, high = found
    assert point == -1.0 and low <= point < high
