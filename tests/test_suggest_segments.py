"""``suggest segments`` on simulations with planted segments: YAML the engine evaluates, and the truth recovered."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.metrics import adjusted_rand_score

from personalize_mw.analytics.segment_suggest import Suggestion, suggest_segments
from personalize_mw.analytics.simulate import simulate, write_jsonl
from personalize_mw.analytics.visitor_features import Pageview, snapshot_profile
from personalize_mw.cli import main
from personalize_mw.config import load_config, read_yaml
from personalize_mw.rules.conditions import compile_condition, compile_segments

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example_site" / "personalize.yaml"


def _planted(tmp_path: Path, visitors: int, seed: int) -> tuple[Path, dict[str, str]]:
    labels: dict[str, str] = {}
    path = tmp_path / "sim.jsonl"
    write_jsonl(simulate(visitors, seed=seed, segments=True, labels=labels), path)
    return path, labels


def _suggested(path: Path, **options: Any) -> Suggestion:
    return suggest_segments([str(path)], config=load_config(EXAMPLE), goal="signup", ignore=["/signup"], **options)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Suggestion]:
    path, labels = _planted(tmp_path_factory.mktemp("suggest"), 10_000, seed=7)
    return path, labels, _suggested(path)


def _snapshots(path: Path) -> dict[str, list[Pageview]]:
    """Each consenting visitor's pageviews before their first sign-up, read from the JSONL itself."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    cut: dict[str, str] = {}
    for r in records:
        if r["type"] == "conversion" and r["goal"] == "signup" and r["visitor"]:
            cut[r["visitor"]] = min(cut.get(r["visitor"], r["ts"]), r["ts"])
    views: dict[str, list[Pageview]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r["ts"]):
        v = r["visitor"]
        if r["type"] == "pageview" and v and (v not in cut or r["ts"] < cut[v]):
            seconds = datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp()
            views[v].append((seconds, r["session"], r["path"], r["channel"], r["device"], r["country"]))
    return views


@pytest.mark.parametrize("options", [{}, {"with_stages": True}, {"by_tag": True}], ids=["prefix", "stages", "tags"])
def test_the_yaml_loads_in_the_example_config_and_the_engine_puts_every_visitor_where_the_rules_do(
        options: dict[str, bool], planted: tuple[Path, dict[str, str], Suggestion], tmp_path: Path) -> None:
    path, _, found = planted
    if options:
        found = _suggested(path, **options)
        kind = "stage " if "with_stages" in options else "read a page tagged "
        assert any(f.name.startswith(kind) for f in found.data.features)
    emitted = tmp_path / "segments.yaml"
    emitted.write_text(found.text)
    data, _ = read_yaml(EXAMPLE)
    suggested = read_yaml(emitted)[0]["segments"]  # the config's own reader, which refuses YAML aliases
    assert set(suggested) == {n.name for n in found.named} and len(suggested) >= 3
    assert not set(suggested) & set(data["segments"])
    data["segments"] = {**data["segments"], **suggested}
    data["base_dir"] = str(EXAMPLE.parent)  # its template files
    merged = tmp_path / "personalize.yaml"
    merged.write_text(yaml.safe_dump(data, sort_keys=False))
    config = load_config(merged)  # the project's loader: schema, conditions, the whole config
    compiled = compile_segments({name: config.segments[name] for name in suggested}, 0.005)

    expected = found.segment_of()
    views = _snapshots(path)
    assert set(views) == set(expected)
    mismatched = []
    for visitor, pageviews in views.items():
        ctx, profile, now = snapshot_profile(visitor, pageviews)
        matched = [name for name, condition in compiled.items() if condition(ctx, profile, now)]
        if matched != ([expected[visitor]] if expected[visitor] else []):
            mismatched.append((visitor, matched, expected[visitor]))
    assert not mismatched, mismatched[:5]
    # Every segment is as large as --min-share asks, and the comments carry its figures.
    for item in found.named:
        assert item.segment.visitors >= 0.05 * found.fit.visitors
        assert f"{item.segment.visitors:,} visitors" in found.text


def test_every_feature_device_and_country_too_is_what_the_engine_says_of_the_visitors_snapshot(
        planted: tuple[Path, dict[str, str], Suggestion]) -> None:
    path, _, found = planted
    data = found.data
    names = [f.name for f in data.features]
    assert {"device mobile", "device desktop", "country DE", "country US"} <= set(names), names
    assert {"channel social"} <= set(names)
    views = _snapshots(path)
    tests = [(compile_condition(f.condition, {}), compile_condition(f.negation, {})) for f in data.features]
    mismatched = []
    for index, visitor in enumerate(data.visitors):
        ctx, profile, now = snapshot_profile(visitor, views[visitor])
        row = data.rows[data.row_of[index]]
        for (holds, fails), feature, value in zip(tests, data.features, row, strict=True):
            if holds(ctx, profile, now) != bool(value) or fails(ctx, profile, now) == bool(value):
                mismatched.append((visitor, feature.name, int(value)))
    assert not mismatched, mismatched[:5]
    assert found.data.features[names.index("country DE")].negation == {"country": {"ne": "DE"}}


@pytest.mark.parametrize("seed", [7, 11])
def test_suggested_segments_recover_the_planted_ones(seed: int, tmp_path: Path,
                                                     planted: tuple[Path, dict[str, str], Suggestion]) -> None:
    if seed == 7:
        _, labels, found = planted
    else:
        path, labels = _planted(tmp_path, 10_000, seed=seed)
        found = _suggested(path)
    segment_of = found.segment_of()
    visitors = sorted(segment_of)
    assert len(visitors) > 6000 and set(visitors) <= set(labels)
    ari = adjusted_rand_score([labels[v] for v in visitors], [segment_of[v] or "" for v in visitors])
    assert ari >= 0.8, (ari, found.text)


def test_too_small_groups_are_merged_or_dropped_and_the_output_says_so(
        planted: tuple[Path, dict[str, str], Suggestion]) -> None:
    path, _, _ = planted
    # Three planted segments hold just under 15 % of the consenting visitors each.
    merged = _suggested(path, min_share=0.15)
    passed = [note for note in merged.fit.notes if "passed over" in note]
    better = [k for k in sorted(merged.fit.bic) if merged.fit.bic[k] < merged.fit.bic[merged.fit.k]]
    assert better and passed and passed[0].startswith(f"k = {', '.join(map(str, better))}, with a lower BIC")
    assert "Merged or dropped:" in merged.text and passed[0] in merged.text
    assert all(item.segment.visitors >= 0.15 * merged.fit.visitors for item in merged.named)
    assert None not in merged.segment_of().values()  # merged: everyone is in a segment
    dropped = _suggested(path, min_share=0.15, small="drop")
    assert dropped.fit.k == min(dropped.fit.bic, key=dropped.fit.bic.__getitem__) > merged.fit.k
    assert any("dropped: they keep the default experience" in note for note in dropped.fit.notes)
    assert all(item.segment.visitors >= 0.15 * dropped.fit.visitors for item in dropped.named)
    assert None in dropped.segment_of().values()  # the dropped visitors are in no segment
    assert sum(n is None for n in dropped.segment_of().values()) < 0.6 * dropped.fit.visitors


def test_the_command_writes_the_file_and_refuses_bad_input_with_a_message(
        planted: tuple[Path, dict[str, str], Suggestion], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _, _ = planted
    out = tmp_path / "suggested.yaml"
    assert main(["suggest", "segments", str(path), "--config", str(EXAMPLE), "--goal", "signup",
                 "--ignore", "/signup", "--out", str(out)]) == 0
    assert "segments of" in capsys.readouterr().out
    assert yaml.safe_load(out.read_text())["segments"]
    assert main(["suggest", "segments", str(path), "--min-share", "2"]) == 1
    assert "--min-share is a share" in capsys.readouterr().err
    assert main(["suggest", "segments", str(tmp_path / "missing.jsonl")]) == 1
    assert "no touchpoint files" in capsys.readouterr().err
    empty = tmp_path / "anonymous.jsonl"
    empty.write_text("".join(line + "\n" for line in path.read_text().splitlines()
                             if '"visitor":null' in line.replace(" ", ""))[:200_000].rsplit("\n", 1)[0] + "\n")
    assert main(["suggest", "segments", str(empty)]) == 1
    assert "no consenting visitor" in capsys.readouterr().err


def test_the_site_simulation_plants_the_same_segments_and_labels_every_consenting_visitor(tmp_path: Path) -> None:
    from personalize_mw.analytics.simulate import PERSONAS, SEGMENT_EFFECTS
    from personalize_mw.analytics.simulate_site import simulate_site

    labels: dict[str, str] = {}
    out = tmp_path / "site.jsonl"
    simulate_site(150, out, seed=3, segments=True, labels=labels)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["visitor"] for r in records if r["visitor"]} == set(labels)  # the id read back from the cookie
    assert set(labels.values()) <= {p.name for p in PERSONAS} and len(set(labels.values())) >= 4
    assert set(SEGMENT_EFFECTS) == {p.name for p in PERSONAS}


def test_simulate_segments_writes_the_labels_and_the_per_segment_truth(tmp_path: Path) -> None:
    from personalize_mw.analytics.simulate import SEGMENT_EFFECTS

    out = tmp_path / "sim.jsonl"
    assert main(["simulate", "--mode", "direct", "--segments", "--visitors", "2000", "--out", str(out)]) == 0
    truth = json.loads((tmp_path / "sim.truth.json").read_text())
    assert truth["segments"]["effects"] == SEGMENT_EFFECTS
    ids = {json.loads(line)["visitor"] for line in out.read_text().splitlines()} - {None}
    assert set(truth["segments"]["labels"]) == ids
    benchmark = [e["cta:benchmark"] for e in SEGMENT_EFFECTS.values() if "cta:benchmark" in e]
    # Averaged over the visitors it was assigned to: between the segments' own effects.
    assert min(benchmark) < truth["effects"]["cta:benchmark"] < max(benchmark)
    assert truth["effects"]["hero:switcher"] == pytest.approx(SEGMENT_EFFECTS["switcher"]["hero:switcher"])
    assert main(["simulate", "--mode", "direct", "--visitors", "50", "--out", str(out)]) == 0
    assert "segments" not in json.loads((tmp_path / "sim.truth.json").read_text())  # without --segments, as before


def test_a_condition_used_twice_is_written_out_twice_not_as_a_yaml_alias(tmp_path: Path) -> None:
    import numpy as np

    from personalize_mw.analytics.segment_fit import Fit, Segment
    from personalize_mw.analytics.segment_yaml import named_segments, render
    from personalize_mw.analytics.visitor_features import stage_feature

    stages = [("awareness", None), ("decision", {"viewed": "/pricing"}), ("customer", {"goal_completed": "signup"})]
    features = [stage_feature(stages, 0), stage_feature(stages, 1)]
    # Two leaves that both test the same stage: the same dict twice in one segment.
    segment = Segment(0, [[(0, False), (1, True)], [(0, False), (1, False)]], 60, 6.0, np.array([0.0, 0.5]))
    fit = Fit(features, 2, {2: 1.0}, [segment], overall=np.array([0.4, 0.3]), visitors=100, conversions=10.0)
    emitted = tmp_path / "segments.yaml"
    emitted.write_text(render(fit, named_segments(fit), ["header"]))
    assert "&id" not in emitted.read_text()
    assert load_config({"secret_keys": ["x" * 16], "segments": read_yaml(emitted)[0]["segments"]}).segments
