"""The readout statistics (issue 11): checked against statsmodels and by simulation.

statsmodels is a test-only reference. The simulation properties are the ones
the readout promises: read every day, the always-valid interval keeps its 95 %,
where the fixed-horizon interval does not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.multitest import multipletests

from personalize_mw.analytics import readout
from personalize_mw.analytics.lift import Z95, ArmCounts, Outcomes, lift_rows, newcombe_difference, significant

P_VALUES = st.lists(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)  # statsmodels' holm takes ~60 ms a call here
@given(P_VALUES)
def test_holm_matches_statsmodels(p: list[float]) -> None:
    assert np.allclose(readout.holm(p), multipletests(p, method="holm")[1], atol=1e-12)


@settings(max_examples=300, deadline=None)
@given(P_VALUES)
def test_benjamini_hochberg_matches_statsmodels(p: list[float]) -> None:
    assert np.allclose(readout.benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], atol=1e-12)


def test_unknown_correction_is_refused() -> None:
    with pytest.raises(ValueError, match="holm, bh, none"):
        readout.adjust([0.1], "bonferoni")


@pytest.mark.parametrize(("x1", "n1", "x0", "n0"), [(30, 1000, 20, 1000), (5, 80, 9, 90), (300, 5000, 280, 5100),
                                                    (0, 50, 1, 60), (120, 400, 60, 400)])
def test_bayesian_figures_match_monte_carlo(x1: int, n1: int, x0: int, n0: int) -> None:
    rng = np.random.default_rng(11)
    p1 = rng.beta(1 + x1, 1 + n1 - x1, 1_000_000)
    p0 = rng.beta(1 + x0, 1 + n0 - x0, 1_000_000)
    beats = float((p1 > p0).mean())
    assert readout.chance_to_beat(x1, n1, x0, n0) == pytest.approx(beats, abs=4 * math.sqrt(beats * (1 - beats) / 1e6)
                                                                   + 1e-6)
    loss = np.maximum(p0 - p1, 0)
    assert readout.expected_loss(x1, n1, x0, n0) == pytest.approx(float(loss.mean()),
                                                                  abs=4 * float(loss.std()) / 1000 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(0, 400), st.integers(1, 400), st.integers(0, 400))
def test_chance_to_beat_is_symmetric(n1: int, x1: int, n0: int, x0: int) -> None:
    x1, x0 = min(x1, n1), min(x0, n0)
    assert readout.chance_to_beat(x1, n1, x0, n0) + readout.chance_to_beat(x0, n0, x1, n1) == pytest.approx(1.0,
                                                                                                           abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.integers(10, 20000), st.integers(10, 20000), st.floats(0.01, 0.5), st.floats(0.01, 0.5))
def test_the_p_value_is_below_alpha_exactly_when_the_interval_excludes_zero(n1: int, n0: int, r1: float,
                                                                            r0: float) -> None:
    x1, x0 = round(n1 * r1), round(n0 * r0)
    _, low, high = readout.sequential_difference(x1, n1, x0, n0)
    p = readout.sequential_p_value(x1, n1, x0, n0)
    if abs(p - readout.ALPHA) > 1e-9:
        assert (p < readout.ALPHA) == (low > 0 or high < 0)


def test_the_always_valid_interval_is_wider_than_the_fixed_one_and_shrinks() -> None:
    widths = []
    for n in (500, 5000, 50000):
        _, low, high = readout.sequential_difference(n // 10, n, n // 12, n)
        _, f_low, f_high = newcombe_difference(n // 10, n, n // 12, n)
        assert high - low > f_high - f_low
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


def _daily_runs(effect: float, runs: int, days: int, per_day: int, base: float,
                seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative counts per run and day of an experiment with 50 % holdout."""
    rng = np.random.default_rng(seed)
    n1 = np.cumsum(rng.binomial(per_day, 0.5, (runs, days)), axis=1)
    n0 = per_day * np.arange(1, days + 1) - n1
    x1 = np.cumsum(rng.binomial(np.diff(n1, prepend=0, axis=1), base + effect), axis=1)
    x0 = np.cumsum(rng.binomial(np.diff(n0, prepend=0, axis=1), base), axis=1)
    return x1, n1, x0, n0


def _ever_misses(effect: float, x1: np.ndarray, n1: np.ndarray, x0: np.ndarray, n0: np.ndarray) -> tuple[float, float]:
    """Share of runs whose interval misses the true effect on some day: (always-valid, fixed-horizon)."""
    p1, p0 = x1 / n1, x0 / n0
    variance = p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0
    d = p1 - p0
    t = n1 + n0
    rho = readout.tuning()
    r2 = rho * rho
    half = np.sqrt(variance * t) * np.sqrt(2 * (t * r2 + 1) / (t * t * r2) * np.log(np.sqrt(t * r2 + 1) / readout.ALPHA))
    seq = (np.abs(d - effect) > half).any(axis=1).mean()
    fixed = (np.abs(d - effect) > Z95 * np.sqrt(variance)).any(axis=1).mean()
    return float(seq), float(fixed)


def test_the_vectorised_check_is_the_readouts_interval() -> None:
    _, low, high = readout.sequential_difference(60, 1000, 45, 980)
    x1, n1, x0, n0 = (np.array([[v]]) for v in (60, 1000, 45, 980))
    assert _ever_misses(low + 1e-9, x1, n1, x0, n0)[0] == 0.0 and _ever_misses(high - 1e-9, x1, n1, x0, n0)[0] == 0.0
    assert _ever_misses(low - 1e-6, x1, n1, x0, n0)[0] == 1.0 and _ever_misses(high + 1e-6, x1, n1, x0, n0)[0] == 1.0


def test_an_aa_test_read_every_day_for_four_weeks_stays_within_five_percent() -> None:
    # 2,000 A/A experiments, 400 visitors a day, 5 % conversion, looked at on each of 28 days.
    seq, fixed = _ever_misses(0.0, *_daily_runs(0.0, runs=2000, days=28, per_day=400, base=0.05, seed=3))
    assert seq <= 0.05
    assert fixed > 0.15  # the oldest error in experimentation, for contrast (docs/lift.md quotes both)


def test_a_real_effect_is_covered_every_day_at_least_95_percent_of_the_time() -> None:
    seq, _ = _ever_misses(0.01, *_daily_runs(0.01, runs=2000, days=28, per_day=400, base=0.05, seed=5))
    assert seq <= 0.05


def test_rows_carry_the_readout_and_the_correction_spans_them() -> None:
    found = {("hero", "a"): Outcomes("e1", ArmCounts(5000, 400), ArmCounts(5000, 300)),
             ("hero", "b"): Outcomes("e1", ArmCounts(5000, 310), ArmCounts(5000, 300)),
             ("cta", "c"): Outcomes("e2", ArmCounts(5000, 250), ArmCounts(5000, 330))}
    holm_rows = {r.key: r for r in lift_rows(found, correction="holm")}
    none_rows = {r.key: r for r in lift_rows(found, correction="none")}
    seq = [none_rows[k].seq_p_value for k in ("cta:c", "hero:a", "hero:b")]
    assert [holm_rows[k].p_adjusted for k in ("cta:c", "hero:a", "hero:b")] == pytest.approx(readout.holm(seq))
    assert [none_rows[k].p_adjusted for k in ("cta:c", "hero:a", "hero:b")] == pytest.approx(seq)
    assert significant(holm_rows["hero:a"]) == 1 and significant(holm_rows["cta:c"]) == -1
    assert significant(holm_rows["hero:b"]) == 0
    assert holm_rows["hero:a"].chance_to_beat > 0.99 and holm_rows["cta:c"].expected_loss > 0.01


def _experiment_records(seed: int, visitors: int, effect: float) -> list[dict]:
    """Visitors with 0-9 pageviews before their first exposure; more pageviews, more likely to convert."""
    rng = np.random.default_rng(seed)
    records: list[dict] = []

    def ts(minute: int) -> str:
        return f"2026-03-{1 + minute // 1440:02d}T{minute // 60 % 24:02d}:{minute % 60:02d}:00.000Z"

    for i in range(visitors):
        visitor, pre = f"v{i}", int(rng.integers(0, 10))
        arm = "treatment" if rng.random() < 0.5 else "holdout"
        records += [{"type": "pageview", "visitor": visitor, "ts": ts(k)} for k in range(pre)]
        records.append({"type": "exposure", "visitor": visitor, "ts": ts(20), "slot": "hero", "variant": "a",
                        "arm": arm, "experiment": "e"})
        if rng.random() < 0.05 + 0.1 * pre + (effect if arm == "treatment" else 0.0):
            records.append({"type": "conversion", "visitor": visitor, "ts": ts(30), "goal": "signup",
                            "value": float(rng.integers(50, 150))})
        records.append({"type": "pageview", "visitor": visitor, "ts": ts(40)})  # after exposure: not a covariate
    return records


def test_cuped_narrows_the_interval_when_the_covariate_predicts_and_keeps_the_estimate() -> None:
    from personalize_mw.analytics.lift import lift

    (row,) = lift(_experiment_records(1, 6000, 0.03))
    assert row.variance_reduction is not None and row.variance_reduction > 0.2
    assert row.cuped_abs_high - row.cuped_abs_low < row.seq_abs_high - row.seq_abs_low
    assert row.cuped_abs_low < 0.03 < row.cuped_abs_high


def test_cuped_estimates_are_closer_to_the_truth_than_plain_ones() -> None:
    from personalize_mw.analytics.lift import lift

    plain, adjusted = [], []
    for seed in range(40):
        (row,) = lift(_experiment_records(300 + seed, 1500, 0.02))
        plain.append(row.abs_lift - 0.02)
        adjusted.append(row.cuped_abs_lift - 0.02)
    assert np.mean(np.square(adjusted)) < 0.85 * np.mean(np.square(plain))  # ~1/(1 - R^2) less error


def test_cuped_covers_the_true_effect_as_often_as_promised() -> None:
    from personalize_mw.analytics.lift import lift

    misses = 0
    for seed in range(60):
        (row,) = lift(_experiment_records(100 + seed, 1500, 0.02))
        misses += not row.cuped_abs_low <= 0.02 <= row.cuped_abs_high
    assert misses <= 6  # 95 % always-valid: expected ~1 of 60, well below 5 %


def test_revenue_per_visitor_is_the_mean_of_each_visitors_value() -> None:
    from personalize_mw.analytics.lift import lift, outcomes

    records = _experiment_records(2, 3000, 0.03)
    (row,) = lift(records)
    out = outcomes(records)[("hero", "a")]
    per_visitor = {"treatment": [], "holdout": []}
    arms = {r["visitor"]: r["arm"] for r in records if r["type"] == "exposure"}
    value = {r["visitor"]: r["value"] for r in records if r["type"] == "conversion"}
    for visitor, arm in arms.items():
        per_visitor[arm].append(value.get(visitor, 0.0))
    t, h = np.array(per_visitor["treatment"]), np.array(per_visitor["holdout"])
    assert row.revenue_treatment == pytest.approx(t.mean()) and row.revenue_holdout == pytest.approx(h.mean())
    variance = t.var(ddof=1) / len(t) + h.var(ddof=1) / len(h)
    expect = readout.sequential_interval(t.mean() - h.mean(), variance, len(t) + len(h))
    assert (row.revenue_lift, row.revenue_low, row.revenue_high) == pytest.approx(expect)
    assert out.treatment.pre == sum(1 for r in records if r["type"] == "pageview" and arms[r["visitor"]] ==
                                    "treatment" and r["ts"] < "2026-03-01T00:20")
    assert row.revenue_p_adjusted is not None and row.p_adjusted is not None


def test_duckdb_and_python_agree_on_every_sum(tmp_path) -> None:
    import json

    from personalize_mw.analytics import open_source
    from personalize_mw.analytics.lift import outcomes, outcomes_sql

    records = _experiment_records(3, 800, 0.03)
    for r in records:
        r.setdefault("slot", None)
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    sql = outcomes_sql(open_source([str(path)]))
    walk = outcomes(records)
    assert sql.keys() == walk.keys()
    for key in sql:
        for arm in ("treatment", "holdout"):
            a, b = getattr(sql[key], arm), getattr(walk[key], arm)
            assert (a.visitors, a.converted, a.pre, a.pre_sq, a.pre_converted) == (b.visitors, b.converted, b.pre,
                                                                                   b.pre_sq, b.pre_converted)
            assert a.pre > 0 and a.revenue > 0
            assert a.revenue == pytest.approx(b.revenue) and a.revenue_sq == pytest.approx(b.revenue_sq)


@pytest.mark.parametrize(("x1", "n1", "x0", "n0"), [(0, 500, 0, 500), (0, 40, 3, 40), (60, 60, 0, 60),
                                                    (500, 500, 490, 500)])
def test_an_arm_at_zero_or_all_converted_does_not_shrink_the_interval_to_a_point(x1: int, n1: int, x0: int,
                                                                                 n0: int) -> None:
    # The plug-in p(1 - p) is 0 there: both arms at 0 % gave [0, 0], "certain" after 1,000 visitors.
    d, low, high = readout.sequential_difference(x1, n1, x0, n0)
    _, f_low, f_high = newcombe_difference(x1, n1, x0, n0)
    assert low < high and low <= d <= high and (low < d or d == -1) and (d < high or d == 1)  # ends clipped to +-1
    assert high - low > f_high - f_low  # wider than the fixed-horizon interval, as everywhere else
    p = readout.sequential_p_value(x1, n1, x0, n0)
    assert 0 < p <= 1 and (p < readout.ALPHA) == (low > 0 or high < 0)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 50_000), st.integers(2, 50_000), st.data())
def test_rates_strictly_between_zero_and_one_keep_the_plug_in_variance(n1: int, n0: int, data: st.DataObject) -> None:
    x1, x0 = data.draw(st.integers(1, n1 - 1)), data.draw(st.integers(1, n0 - 1))
    plug_in = (x1 / n1) * (1 - x1 / n1) / n1 + (x0 / n0) * (1 - x0 / n0) / n0
    assert readout.variance_of_difference(x1, n1, x0, n0) == plug_in


def test_a_metric_nobody_converted_on_has_an_honest_interval_in_the_row_and_its_cuped_figure() -> None:
    pre = ArmCounts()
    for k in range(400):
        pre.add(False, 0.0, k % 7)
    (row,) = lift_rows({("hero", "a"): Outcomes("e", pre, ArmCounts(**vars(pre)))})
    assert row.seq_abs_low is not None and row.seq_abs_low < 0 < row.seq_abs_high
    assert row.cuped_abs_low is not None and row.cuped_abs_low < 0 < row.cuped_abs_high
    assert row.p_adjusted == 1.0 and significant(row) == 0
