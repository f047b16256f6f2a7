"""Causal lift: the statistics against published and hand-computed values, and the records walk."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from personalize_mw.analytics.lift import (
    checked_share, lift, newcombe_difference, outcomes, relative_lift, srm_chi_square, two_proportion_p,
    wilson_interval,
)

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def ts(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def exposure(visitor: str, minutes: float, arm: str, slot: str = "hero", variant: str = "pricing") -> dict[str, Any]:
    return {"type": "exposure", "visitor": visitor, "ts": ts(minutes), "slot": slot, "variant": variant,
            "arm": arm, "experiment": f"{slot}-exp"}


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
    ] + synthetic(500, 0.3, 0.2, 0.1)
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    con = open_source([str(path)])
    for goal in (None, "signup", "whitepaper"):
        for window in (30.0, 40.0):
            assert outcomes_sql(con, window_days=window, goal=goal) == outcomes(records, window_days=window,
                                                                                goal=goal)


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
