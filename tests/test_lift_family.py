"""The readout's family of tests counts each distinct comparison once; intervals of rates stay in [-1, 1]."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from personalize_mw.analytics import readout
from personalize_mw.analytics.lift import lift, newcombe_difference, significant
from personalize_mw.cli import main
from tests.test_lift import conversion, exposure, ts


def _two_variants(n: int, seed: int = 4) -> list[dict[str, Any]]:
    """hero:pricing over two channels; cta:benchmark only ever from search (one cell); +8 pp on pricing."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    for i in range(n):
        for slot, variant, channel in (("hero", "pricing", rng.choice(["social", "direct"])),
                                       ("cta", "benchmark", "search")):
            v = f"v{i}"
            arm = "treatment" if rng.random() < 0.5 else "holdout"
            records.append(exposure(v, i, arm, slot=slot, variant=variant, channel=channel))
            effect = 0.08 if (arm, variant) == ("treatment", "pricing") else 0.0
            if rng.random() < 0.10 + effect:
                records.append(conversion(v, i + 0.5, goal=f"{slot}-goal"))
    return records


def test_a_lone_cell_is_the_whole_variant_and_is_not_counted_twice() -> None:
    rows = lift(_two_variants(3000), by="channel", holdout_share=0.5)
    lone = [r for r in rows if r.key == "cta:benchmark" and r.breakdown is not None]
    assert len(lone) == 1 and lone[0].same_as_whole
    whole = next(r for r in rows if r.key == "cta:benchmark" and r.breakdown is None)
    assert (lone[0].n_treatment, lone[0].seq_p_value) == (whole.n_treatment, whole.seq_p_value)
    assert lone[0].p_adjusted == whole.p_adjusted and lone[0].srm_p_adjusted == whole.srm_p_adjusted
    assert "the same visitors as its whole variant: not a test of its own" in lone[0].warnings
    # The family: hero's whole and two channels, cta's whole; conversion and revenue tests of each.
    distinct = [r for r in rows if not r.same_as_whole]
    assert len(rows) == 5 and len(distinct) == 4
    family = [r.seq_p_value for r in distinct] + [r.revenue_p_value for r in distinct]
    adjusted = readout.holm(family)
    assert [r.p_adjusted for r in distinct] == adjusted[:4]
    # Counted twice, hero's corrected p-value would have been larger (a 10-test family, not 8).
    doubled = readout.holm([r.seq_p_value for r in rows] + [r.revenue_p_value for r in rows])
    hero = next(r for r in rows if r.key == "hero:pricing" and r.breakdown is None)
    assert significant(hero) == 1 and hero.p_adjusted < doubled[rows.index(hero)]


def test_cells_that_differ_from_the_whole_stay_in_the_family() -> None:
    rows = lift(_two_variants(600), by="channel")
    hero_cells = [r for r in rows if r.key == "hero:pricing" and r.breakdown is not None]
    assert len(hero_cells) == 2 and not any(r.same_as_whole for r in hero_cells)


def _tiny(treated: tuple[int, int], held: tuple[int, int]) -> list[dict[str, Any]]:
    """``treated`` / ``held``: (visitors, converters) of each arm."""
    records: list[dict[str, Any]] = []
    for arm, (visitors, converted) in (("treatment", treated), ("holdout", held)):
        for i in range(visitors):
            v = f"{arm}{i}"
            records += [{"type": "pageview", "visitor": v, "ts": ts(i - 0.5 - k / 10)} for k in range(i % 3)]
            records.append(exposure(v, i, arm))
            if i < converted:
                records.append(conversion(v, i + 0.5))
    return records


def test_intervals_of_a_difference_of_rates_stay_within_plus_minus_100_pp_at_tiny_n() -> None:
    for treated, held in (((3, 3), (3, 0)), ((2, 0), (2, 2)), ((1, 1), (2, 0)), ((4, 2), (3, 1))):
        (row,) = lift(_tiny(treated, held))
        unclipped = readout.sequential_interval(row.abs_lift, readout.variance_of_difference(
            treated[1], treated[0], held[1], held[0]), treated[0] + held[0])
        assert unclipped[1] < -1 or unclipped[2] > 1  # tiny n: the boundary itself reaches past +-100 pp
        ends = [row.seq_abs_low, row.seq_abs_high, row.abs_low, row.abs_high, row.cuped_abs_low, row.cuped_abs_high]
        assert all(-1.0 <= e <= 1.0 for e in ends), (treated, held, ends)
        assert row.seq_abs_low <= row.abs_lift <= row.seq_abs_high
        assert (row.seq_abs_low, row.seq_abs_high) == (max(-1.0, unclipped[1]), min(1.0, unclipped[2]))
    # All treated convert, no held-out visitor does: the difference is +100 pp, still inside its interval.
    (row,) = lift(_tiny((3, 3), (3, 0)))
    assert row.abs_lift == 1.0 and row.seq_abs_high == 1.0 and row.abs_high <= 1.0
    assert newcombe_difference(3, 3, 0, 3)[2] <= 1.0


def test_the_json_readout_clips_too(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _tiny((3, 3), (3, 0))))
    assert main(["lift", str(path), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["variants"]
    ends = [row[k] for k in ("seq_abs_low", "seq_abs_high", "abs_low", "abs_high", "cuped_abs_low", "cuped_abs_high")]
    assert all(-1.0 <= e <= 1.0 for e in ends) and row["seq_abs_high"] == 1.0
