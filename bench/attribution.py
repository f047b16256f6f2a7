"""Attribution speed: every model on a million journeys, and the reference libraries on the same data.

    .venv/bin/python bench/attribution.py            # the figures in docs/performance.md ("Attribution")
    .venv/bin/python bench/attribution.py --quick    # a smoke run; figures not meaningful

The journeys are seeded synthetic ones (personalize_mw.analytics.synthetic):
1,000,000 journeys, about 5 million touches, 10 channels. Our models run on the
arrays :func:`build_journeys` returns (the DuckDB part that builds them from
records is not in these figures). Best of a few rounds for ours; one round for
the references (ChannelAttribution, marketing-attribution-models), whose input
(a grouped path table, a journey DataFrame) is prepared outside the timing.
Peak memory is the process's maximum resident size after our models ran,
before any reference library is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.dont_write_bytecode = True  # nothing written into bench/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personalize_mw.analytics import HEURISTICS, attribute, credited_totals  # noqa: E402
from personalize_mw.analytics.journeys import Journeys  # noqa: E402
from personalize_mw.analytics.synthetic import grouped_paths, synthetic_journeys  # noqa: E402

TARGETS = {"heuristics (5 models)": 2.0, "markov order 1": 2.0, "shapley": 3.0}
PEAK_TARGET_MB = 2048


def best(call: Callable[[], Any], rounds: int) -> float:
    """Fastest wall time; the CPU time of that round is kept in CPU (a loaded machine shows in the gap)."""
    times = []
    for _ in range(rounds):
        start, cpu = time.perf_counter(), time.process_time()
        call()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    wall, used = min(times)
    CPU[call] = used
    return wall


CPU: dict[Callable[[], Any], float] = {}


def once(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # ChannelAttribution's banner and progress
        call()
    return time.perf_counter() - start


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def references(journeys: Journeys) -> dict[str, float]:
    """Seconds per reference step; a library that cannot be imported is reported, not skipped."""
    out: dict[str, float] = {}
    try:
        import pandas as pd
        with contextlib.redirect_stdout(io.StringIO()):
            import ChannelAttribution as ca
    except ImportError as exc:
        print(f"ChannelAttribution not available ({exc}): no reference figures for it")
    else:
        paths, conv, null, value = grouped_paths(journeys)
        frame = pd.DataFrame({"path": paths, "conv": conv, "null": null, "value": value})
        out["ChannelAttribution heuristic_models (first, last, linear)"] = once(
            lambda: ca.heuristic_models(frame, "path", "conv", var_value="value", flg_pro=False))
        out["ChannelAttribution markov_model (defaults, simulated)"] = once(
            lambda: ca.markov_model(frame, "path", "conv", var_value="value", var_null="null", flg_pro=False,
                                    verbose=False))
    try:
        import polars as pl
        from mam import MAM
    except ImportError as exc:
        print(f"marketing-attribution-models not available ({exc}): no reference figures for it")
        return out
    sep = " > "
    labels = journeys.labels
    codes, offsets, hours = journeys.codes.tolist(), journeys.offsets.tolist(), journeys.hours.tolist()
    keep = [j for j in range(journeys.count) if offsets[j + 1] > offsets[j]]
    frame = pl.DataFrame({
        "journey_id": [str(j) for j in keep],
        "channels": [sep.join(labels[c] for c in codes[offsets[j]:offsets[j + 1]]) for j in keep],
        "hours": [sep.join(map(repr, hours[offsets[j]:offsets[j + 1]])) for j in keep],
        "has_conv": journeys.converted[keep].tolist(), "value": journeys.value[keep].tolist()})
    model = MAM(frame, format_type="journey", channels_colname="channels", journey_with_conv_colname="has_conv",
                user_id_colname="journey_id", time_till_conv_colname="hours", path_separator=sep,
                conversion_value_colname="value")
    out["MAM heuristics (5 models)"] = once(lambda: (
        model.run_first_click(), model.run_last_click(), model.run_linear(), model.run_position_based(),
        model.run_time_decay(half_life_hours=168.0)))
    out["MAM markov"] = once(model.run_markov)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20,000 journeys, one round")
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--no-references", action="store_true", help="only our models")
    args = parser.parse_args()
    count = 20_000 if args.quick else args.journeys
    rounds = 1 if args.quick else 3
    journeys = synthetic_journeys(count, channels=args.channels, seed=1)
    conversions, _ = credited_totals(journeys)
    print(f"{journeys.count:,} journeys, {len(journeys.codes):,} touches, {len(journeys.labels)} channels, "
          f"{conversions:,.0f} converting")
    def cold() -> Journeys:  # a new object each round: no index cached from the round before
        return dataclasses.replace(journeys)

    steps: dict[str, Callable[[], Any]] = {
        "heuristics (5 models)": lambda: [attribute(j, m) for j in [cold()] for m in HEURISTICS],
        "markov order 1": lambda: attribute(cold(), "markov"),
        "markov order 2": lambda: attribute(cold(), "markov", order=2),
        "shapley": lambda: attribute(cold(), "shapley"),
    }
    ours = {name: best(step, rounds) for name, step in steps.items()}
    peak = peak_mb()
    print("\n| step | seconds | CPU seconds | target | |\n|---|---:|---:|---:|---|")
    for name, seconds in ours.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else ("PASS" if seconds <= target else "MISS")
        print(f"| {name} | {seconds:.3f} | {CPU[steps[name]]:.3f} | "
              f"{'' if target is None else f'≤ {target:g}'} | {verdict} |")
    print(f"| peak memory (MB) | {peak:.0f} | | ≤ {PEAK_TARGET_MB} | "
          f"{'PASS' if peak <= PEAK_TARGET_MB else 'MISS'} |")
    if args.no_references:
        return
    theirs = references(journeys)
    pairs = {"ChannelAttribution heuristic_models (first, last, linear)": "heuristics (5 models)",
             "ChannelAttribution markov_model (defaults, simulated)": "markov order 1",
             "MAM heuristics (5 models)": "heuristics (5 models)", "MAM markov": "markov order 1"}
    print("\n| reference | seconds | ours | reference / ours |\n|---|---:|---:|---:|")
    for name, seconds in theirs.items():
        mine = ours[pairs[name]]
        print(f"| {name} | {seconds:.3f} | {mine:.3f} | {seconds / mine:.1f}× |")


if __name__ == "__main__":
    main()
