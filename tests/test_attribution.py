"""Journeys from real touchpoint stores, the attribution models on hand-checked cases, and the command."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import uuid
from math import factorial
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from personalize_mw.analytics import Journeys, attribute, build_journeys, credited_totals, open_source
from personalize_mw.analytics.models import MODELS, markov, shapley
from personalize_mw.analytics.synthetic import synthetic_journeys
from personalize_mw.cli import main
from personalize_mw.touchpoints.jsonl import JsonlSink
from personalize_mw.touchpoints.postgresql import PostgresSink
from personalize_mw.touchpoints.record import finalize, new_record
from personalize_mw.touchpoints.sqlite import SqliteSink
from servers import PostgresServer, postgres, pg  # noqa: F401  (fixtures)

UTM = dict.fromkeys(("source", "medium", "campaign", "term", "content"))
CONSENT = {"analytics": True, "personalization": True, "advertising": False, "gpc": False}
HOUR, DAY = 3600.0, 86400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def rec(kind: str, visitor: str, t: float, session: str, channel: str = "direct", path: str = "/",
        **extra: Any) -> dict[str, Any]:
    record = new_record(kind, t, visitor=visitor, session=session, path=path, referrer_host=None,
                        channel=channel, utm=UTM, consent=CONSENT, **extra)
    record["id"] = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{kind}/{visitor}/{t}/{path}"))
    return finalize(record)


def scenario() -> list[dict[str, Any]]:
    """Ann on a phone (P) and a laptop (L), linked by identify; Bob converts twice; Cy never converts."""
    return [
        rec("pageview", "P", T0, "p1", "email", "/a"),
        rec("pageview", "P", T0 + 60, "p1", "email", "/b"),  # same session: one channel touch
        rec("pageview", "L", T0 + 2 * DAY, "l1", "social", "/a"),
        rec("exposure", "L", T0 + 2 * DAY, "l1", "social", "/a", slot="hero", variant="spring", arm="treatment"),
        rec("identify", "P", T0 + 2 * DAY + 1, "p9", user="ann"),
        rec("identify", "L", T0 + 2 * DAY + 2, "l1", user="ann"),
        rec("conversion", "L", T0 + 2 * DAY + HOUR, "l1", "social", "/buy", goal="purchase", value=80),
        rec("pageview", "B", T0, "b1", "paid_search", "/a"),
        rec("exposure", "B", T0, "b1", "paid_search", "/a", slot="hero", variant="spring", arm="holdout"),
        rec("pageview", "B", T0 + DAY, "b2", "organic", "/c"),
        rec("conversion", "B", T0 + DAY, "b2", "organic", "/signup", goal="signup", value=None),
        rec("pageview", "B", T0 + 50 * DAY, "b3", "email", "/b"),
        rec("conversion", "B", T0 + 50 * DAY + 10, "b3", "email", "/buy", goal="purchase", value=20),
        rec("pageview", "C", T0 + 3 * DAY, "c1", "display", "/a"),
        rec("pageview", "C", T0 + 40 * DAY, "c2", "referral", "/c"),
    ]


def paths(journeys: Journeys) -> list[tuple[list[str], bool, float]]:
    return sorted((journeys.path(j), bool(journeys.converted[j]), float(journeys.value[j]))
                  for j in range(journeys.count))


@pytest.fixture(params=["jsonl", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[list[dict[str, Any]]], str]]:
    """Writes records through the real sink of each kind; returns the input spec that reads them."""
    dropped: list[str] = []
    servers: list[PostgresServer] = []

    def write(records: list[dict[str, Any]]) -> str:
        name = f"tp{len(dropped)}"
        dropped.append(name)
        if request.param == "jsonl":
            sink = JsonlSink(tmp_path / f"{name}.jsonl")
            sink.write(records)
            sink.close()
            return str(tmp_path / f"{name}*.jsonl")
        if request.param == "sqlite":
            lite = SqliteSink(tmp_path / f"{name}.db")
            lite.write(records)
            lite.close()
            return f"sqlite:{tmp_path / name}.db"
        server: PostgresServer = request.getfixturevalue("pg")
        servers[:] = [server]
        table = f"attr_{uuid.uuid4().hex[:10]}"
        dropped[-1] = table
        pg_sink = PostgresSink(f"{server.url}?table={table}")
        pg_sink.write(records)
        pg_sink.close()
        return f"{server.url}?table={table}"

    yield write
    for server in servers:
        for table in dropped:
            server.query(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture
def source(store: Callable[[list[dict[str, Any]]], str]) -> str:
    return store(scenario())


def test_channel_journeys_merge_devices_cut_at_conversions_and_apply_the_lookback(source: str) -> None:
    journeys = build_journeys(open_source([source]), by="channel")
    got = paths(journeys)
    assert (["email", "social"], True, 80.0) in got  # Ann: phone then laptop, one person
    assert (["paid_search", "organic"], True, 0.0) in got  # Bob's signup (no value)
    assert (["email"], True, 20.0) in got  # Bob's next journey starts after the signup
    assert (["referral"], False, 0.0) in got  # display (37 days earlier) is outside the lookback
    assert len(got) == 4
    hours = journeys.hours[journeys.offsets[[j for j in range(journeys.count)
                                             if journeys.path(j) == ["email", "social"]][0]]]
    assert hours == pytest.approx(2 * 24 + 1)  # the phone's session started 49 hours before the purchase
    wide = build_journeys(open_source([source]), by="channel", lookback_days=60)
    assert (["display", "referral"], False, 0.0) in paths(wide)


def test_goal_content_and_variant_touches(source: str) -> None:
    purchases = paths(build_journeys(open_source([source]), by="channel", goal="purchase"))
    # Without the signup as a conversion, Bob's first two sessions lead to his purchase 50 days on:
    # the lookback leaves them out, so only the email session remains.
    assert (["email"], True, 20.0) in purchases and (["email", "social"], True, 80.0) in purchases
    assert all(p != ["paid_search", "organic"] for p, _, _ in purchases)
    content = paths(build_journeys(open_source([source]), by="content"))
    assert (["/a", "/b", "/a"], True, 80.0) in content
    variants = paths(build_journeys(open_source([source]), by="variant"))
    # Bob's exposure was a holdout (he saw the default): not a touch of the variant.
    assert variants == [([], True, 0.0), ([], True, 20.0), (["hero:spring"], True, 80.0)]


def test_any_text_survives_every_store(store: Callable[[list[dict[str, Any]]], str]) -> None:
    odd = ['/a,"b"\nc', "/é,x", "", "/x\\y"]
    records = [rec("pageview", "A", T0 + i, "a1", "email", path) for i, path in enumerate(odd)]
    records.append(rec("conversion", "A", T0 + 10, "a1", "email", "/buy", goal="g", value=3.5))
    journeys = build_journeys(open_source([store(records)]), by="content")
    assert paths(journeys) == [(odd, True, 3.5)]


def test_jsonl_folder_and_mixed_inputs_read_alike(tmp_path: Path) -> None:
    records = scenario()
    (tmp_path / "a").mkdir()
    for name, part in (("a/1.jsonl", records[:7]), ("a/2.jsonl", records[7:])):
        sink = JsonlSink(tmp_path / name)
        sink.write(part)
        sink.close()
    lite = SqliteSink(tmp_path / "tp.db")
    lite.write(records)
    lite.close()
    folder = paths(build_journeys(open_source([str(tmp_path / "a")])))
    assert folder == paths(build_journeys(open_source([f"sqlite:{tmp_path / 'tp.db'}"])))
    with pytest.raises(FileNotFoundError):
        open_source([str(tmp_path / "nothing-*.jsonl")])


# ---------------------------------------------------------------- models on hand-checked journeys

HAND = Journeys.from_paths([["a"], ["a", "b"], ["a", "b", "c", "b"], ["c"]], [True, True, True, False],
                           value=[10, 20, 40, 0], hours=[[0], [168, 0], [336, 168, 24, 0], [5]])


def credit(model: str) -> dict[str, float]:
    result = attribute(HAND, model)
    return dict(zip(result.labels, result.conversions.tolist()))


def test_heuristics_by_hand() -> None:
    assert credit("first") == {"a": 3, "b": 0, "c": 0}
    assert credit("last") == {"a": 1, "b": 2, "c": 0}
    assert credit("linear") == pytest.approx({"a": 1 + 0.5 + 0.25, "b": 0.5 + 0.5, "c": 0.25})
    assert credit("position") == pytest.approx({"a": 1 + 0.5 + 0.4, "b": 0.5 + 0.1 + 0.4, "c": 0.1})
    w = np.array([0.25, 0.5, 2 ** (-24 / 168), 1.0])
    w /= w.sum()
    assert credit("time_decay") == pytest.approx({"a": 1 + 1 / 3 + w[0], "b": 2 / 3 + w[1] + w[3], "c": w[2]})
    value = attribute(HAND, "position").value
    assert value.tolist() == pytest.approx([10 + 10 + 16, 10 + 4 + 16, 4])
    assert attribute(HAND, "time_decay", half_life_hours=1e12).conversions == pytest.approx(
        attribute(HAND, "linear").conversions)


def test_every_model_distributes_the_same_totals() -> None:
    journeys = synthetic_journeys(3000, channels=7, seed=11)
    conversions, value = credited_totals(journeys)
    for model in MODELS:
        result = attribute(journeys, model)
        assert result.conversions.sum() == pytest.approx(conversions, rel=1e-9), model
        assert result.value.sum() == pytest.approx(value, rel=1e-9), model
        assert (result.conversions >= -1e-12).all(), model


def test_markov_removal_effects_by_hand() -> None:
    # b>b collapses to b: start -> a 4/6 | b 2/6; a -> conv 1/4 | b 3/4; b -> conv 3/5 | null 2/5
    j = Journeys.from_paths([["a"], ["a", "b"], ["a", "b"], ["b"], ["b", "b"], ["a", "b"]],
                            [True, True, False, False, True, True])
    p = 4 / 6 * (1 / 4 + 3 / 4 * 3 / 5) + 2 / 6 * 3 / 5
    without_a = 2 / 6 * 3 / 5
    without_b = 4 / 6 * 1 / 4
    re = np.array([1 - without_a / p, 1 - without_b / p])
    assert markov(j).conversions == pytest.approx(4 * re / re.sum(), rel=1e-12)
    # Order 2 tells "b after a" (converts 2/3) from "b first" (1/2): P = 4/6 (1/4 + 3/4 * 2/3) + 2/6 * 1/2
    # = 2/3; without a: 1/6, without b (and a>b): 1/6; equal removal effects.
    assert markov(j, order=2).conversions == pytest.approx([2.0, 2.0], rel=1e-12)
    # A channel seen only in journeys that never convert has no removal effect.
    k = Journeys.from_paths([["a"], ["z"], ["z", "z"]], [True, False, False])
    assert markov(k).conversions.tolist() == [1.0, 0.0]


def test_markov_higher_order_sees_sequence() -> None:
    # Conversions follow a>b only, never b>a: order 2 must tell them apart (order 1 can't).
    seqs = [["a", "b"]] * 30 + [["b", "a"]] * 30 + [["c", "a", "b"]] * 10 + [["c"]] * 10
    conv = [True] * 30 + [False] * 30 + [True] * 10 + [False] * 10
    j = Journeys.from_paths(seqs, conv)
    first, second = markov(j, order=1).conversions, markov(j, order=2).conversions
    assert first.sum() == pytest.approx(40) and second.sum() == pytest.approx(40)
    assert not np.allclose(first, second)


def brute_force_shapley(journeys: Journeys) -> np.ndarray:
    """The Shapley formula itself, over every coalition, with v(S) = conversions of journeys whose set ⊆ S."""
    n = len(journeys.labels)
    sets = [frozenset(journeys.codes[journeys.offsets[j]:journeys.offsets[j + 1]].tolist())
            for j in range(journeys.count) if journeys.converted[j] and journeys.lengths[j]]

    def v(s: frozenset[int]) -> int:
        return sum(1 for t in sets if t <= s)

    phi = np.zeros(n)
    for i in range(n):
        others = [k for k in range(n) if k != i]
        for size in range(n):
            for s in itertools.combinations(others, size):
                coalition = frozenset(s)
                weight = factorial(size) * factorial(n - size - 1) / factorial(n)
                phi[i] += weight * (v(coalition | {i}) - v(coalition))
    return phi


def test_shapley_equals_the_enumerated_formula() -> None:
    journeys = synthetic_journeys(400, channels=6, seed=5)
    assert shapley(journeys).conversions == pytest.approx(brute_force_shapley(journeys), rel=1e-12)
    assert shapley(HAND).conversions.tolist() == pytest.approx([1 + 0.5 + 1 / 3, 0.5 + 1 / 3, 1 / 3])


# ---------------------------------------------------------------- the command


def test_attribution_command_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = scenario() + [rec("pageview", "Z", T0 + 5 * DAY, "z1", "email", "=HYPERLINK(1)"),
                            rec("conversion", "Z", T0 + 5 * DAY + 1, "z1", "email", "/buy", goal="purchase",
                                value=5)]
    sink = JsonlSink(tmp_path / "tp.jsonl")
    sink.write(records)
    sink.close()
    source = str(tmp_path / "tp.jsonl")
    assert main(["attribution", source, "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer["models"]) == set(MODELS)
    assert answer["journeys"] == 5 and answer["credited_conversions"] == 4
    for model, credits in answer["models"].items():
        assert math.isclose(sum(c["conversions"] for c in credits.values()), 4), model
    assert answer["models"]["last"]["social"] == {"conversions": 1.0, "value": 80.0}
    assert main(["attribution", source, "--by", "content", "--model", "last", "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["content", "model", "conversions", "value"]
    assert ["'=HYPERLINK(1)", "last", "1.0", "5.0"] in rows  # never a formula in a spreadsheet
    assert main(["attribution", source, "--model", "markov", "--value"]) == 0
    table = capsys.readouterr().out
    assert "markov" in table and "social" in table and "conversion value" in table
    assert main(["attribution", str(tmp_path / "none-*.jsonl")]) == 1
    assert "no touchpoint files" in capsys.readouterr().err


def test_a_torn_line_stops_with_its_place_unless_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink = JsonlSink(tmp_path / "tp.jsonl")
    sink.write(scenario())
    sink.close()
    whole = str(tmp_path / "tp.jsonl")
    assert main(["attribution", whole, "--format", "json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    with open(whole, "a", encoding="utf-8") as out:
        out.write('{"ts": "2026-01-0')  # a crash mid-write
    assert main(["attribution", whole, "--format", "json"]) == 1
    err = capsys.readouterr().err
    assert "Malformed JSON" in err and "tp.jsonl" in err and "--skip-bad-lines" in err
    assert main(["attribution", whole, "--format", "json", "--skip-bad-lines"]) == 0
    assert json.loads(capsys.readouterr().out) == expected


def test_no_records_gives_empty_credit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["attribution", str(tmp_path / "empty.jsonl"), "--format", "json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["journeys"] == 0 and all(credits == {} for credits in answer["models"].values())


def direct_markov(journeys: Journeys, order: int) -> np.ndarray:
    """An independent order-k chain from Python tuples, one plain solve per removed label."""
    from collections import Counter

    moves: Counter[tuple[Any, Any]] = Counter()
    for j in range(journeys.count):
        path = [t for i, t in enumerate(journeys.path(j)) if i == 0 or t != journeys.path(j)[i - 1]]
        if not path:
            continue
        states = ["start"] + [tuple(path[max(0, i - order + 1):i + 1]) for i in range(len(path))]
        states.append("conv" if journeys.converted[j] else "null")
        moves.update(zip(states, states[1:]))
    transient = sorted({a for a, _ in moves} - {"start"}, key=str)
    index = {s: i + 1 for i, s in enumerate(transient)}
    index["start"] = 0
    n = len(index)

    def p_conv(removed: str | None) -> float:
        a, r = np.eye(n), np.zeros(n)
        totals = Counter[Any]()
        for (src, _), count in moves.items():
            totals[src] += count
        for (src, dst), count in moves.items():
            if removed is not None and src != "start" and removed in src:
                continue  # a removed state leads to null
            if dst == "conv":
                r[index[src]] += count / totals[src]
            elif dst != "null" and not (removed is not None and removed in dst):
                a[index[src], index[dst]] -= count / totals[src]
        return float(np.linalg.solve(a, r)[0])

    base = p_conv(None)
    effects = np.array([1 - p_conv(label) / base for label in journeys.labels])
    return credited_totals(journeys)[0] * effects / effects.sum()


@pytest.mark.parametrize("order", [1, 2, 3])
def test_markov_equals_a_direct_solve_per_label(order: int) -> None:
    journeys = synthetic_journeys(1500, channels=5, seed=order)
    assert markov(journeys, order).conversions == pytest.approx(direct_markov(journeys, order), rel=1e-9)


def test_values_that_overflow_end_the_command_with_a_message_not_infinity(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    records = scenario() + [rec("pageview", "Z", T0 + 5 * DAY, "z1", "email", "/a"),
                            rec("conversion", "Z", T0 + 5 * DAY + 1, "z1", "email", "/buy", goal="purchase",
                                value=1e308),
                            rec("pageview", "Y", T0 + 5 * DAY, "y1", "social", "/a"),
                            rec("conversion", "Y", T0 + 5 * DAY + 2, "y1", "social", "/buy", goal="purchase",
                                value=1e308)]
    sink = JsonlSink(tmp_path / "tp.jsonl")
    sink.write(records)
    sink.close()
    assert main(["attribution", str(tmp_path / "tp.jsonl"), "--format", "json"]) == 1
    out, err = capsys.readouterr()
    assert "Infinity" not in out and "past what a float holds" in err
