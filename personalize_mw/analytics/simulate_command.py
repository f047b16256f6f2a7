"""``personalize-mw simulate``: synthetic visitors with known true effects, as touchpoint records."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Synthetic visitors of the example site (Acme Analytics) over four weeks, written
as touchpoint records (JSONL) with the true effect of every variant beside them
in OUT's stem + .truth.json (sim.jsonl -> sim.truth.json), for `lift` and
`report --truth`. The same seed writes the same records (record ids aside).

modes:
  site    (default) walk the visitors through example_site in this process:
          the real middleware chooses the variants, assigns the holdout arms,
          sets the cookies and writes the records through its sink. Use it to
          check the whole path, or after changing the middleware or the rules.
          Needs the repository checkout (example_site is not in the package).
  direct  write the same world's records in the documented shape without the
          site, about six times faster. Use it for quick runs of lift,
          attribution and report, or where example_site is not at hand; it
          mirrors the example rules, so a change to the middleware does not
          show in it.

--config FILE (site mode) runs that personalize.yaml's rules instead, with its
own holdouts: simulate a config again after applying a suggested patch.

--segments plants segments: the personas (who differ in channel and content
read) convert with a true effect per persona for each variant; the truth file
then also holds every visitor id's persona ("segments": {"labels": ...}), the
per-persona effects, and as "effects" each variant's effect averaged over the
enrolled visitors it was assigned to (what lift estimates).

Other worlds with a known answer (direct mode, without --segments): --persona
keeps only visitors of these personas, --effect sets a variant's true effect
for every visitor, --device-effect for the visitors on one device (a variant
that helps on mobile and hurts on desktop). The truth file holds them:
"effects" with the --effect values, "device_effects", "personas".
"""


def truth_path(out: Path) -> Path:
    """Where the truth of a simulation written to ``out`` goes: sim.jsonl -> sim.truth.json."""
    return out.with_suffix(".truth.json")


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    simulate = commands.add_parser("simulate", help="synthetic visitors with known true effects, as touchpoints",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    simulate.add_argument("--visitors", type=int, default=10_000, metavar="N",
                          help="how many visitors to simulate (default 10000)")
    simulate.add_argument("--seed", type=int, default=7,
                          help="random seed: the same seed gives the same records (default 7)")
    simulate.add_argument("--mode", choices=("site", "direct"), default="site",
                          help="site: through example_site and the real middleware (default); "
                          "direct: the same world's records without the site, faster (see above)")
    simulate.add_argument("--out", default="touchpoints.jsonl", metavar="OUT",
                          help="JSONL file to write (default touchpoints.jsonl); the truth goes beside it "
                          "as OUT's stem + .truth.json")
    simulate.add_argument("--segments", action="store_true",
                          help="plant segments: a true effect per persona for each variant, and the personas "
                          "of the visitors in the truth file (for suggest segments; see above)")
    simulate.add_argument("--persona", action="append", default=[], metavar="NAME",
                          help="direct mode: only visitors of this persona (buyer, linkedin, switcher, reviewer, "
                          "researcher); repeatable")
    simulate.add_argument("--effect", action="append", default=[], type=_effect, metavar="SLOT:VARIANT=LIFT",
                          help="direct mode: the variant's true effect on P(sign-up), e.g. hero:linkedin=0.06; "
                          "repeatable")
    simulate.add_argument("--device-effect", action="append", default=[], type=_device_effect,
                          metavar="DEVICE:SLOT:VARIANT=LIFT",
                          help="direct mode: the variant's true effect for visitors on DEVICE (desktop, mobile, "
                          "tablet), e.g. mobile:hero:switcher=0.10; repeatable")
    simulate.add_argument("--config", metavar="FILE",
                          help="site mode: example_site runs this personalize.yaml's rules for hero and cta, with "
                          "its own holdouts (none: no holdout arm), instead of example_site's with a 0.5 holdout; "
                          "to simulate a config after applying a suggested patch")
    simulate.set_defaults(run=run_simulate)


def _effect(text: str) -> tuple[str, float]:
    key, sep, value = text.rpartition("=")
    slot, colon, variant = key.partition(":")
    try:
        lift = float(value)
    except ValueError:
        lift = float("nan")
    if not (sep and colon and slot and variant and -1 < lift < 1):
        raise argparse.ArgumentTypeError(f"{text!r} is not SLOT:VARIANT=LIFT with a lift between -1 and 1")
    return key, lift


def _device_effect(text: str) -> tuple[str, str, float]:
    from .simulate import DEVICES

    device, _, rest = text.partition(":")
    if device not in dict(DEVICES):
        raise argparse.ArgumentTypeError(f"{text!r}: the device is one of {', '.join(d for d, _ in DEVICES)}")
    key, lift = _effect(rest)
    return device, key, lift


@contextmanager
def _progress(visitors: int, mode: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise (logs, CI, pipes)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not (sys.stderr.isatty() and console.is_interactive):
        yield None
        return
    from rich import progress as rp

    with rp.Progress(rp.TextColumn(f"simulate ({mode})"), rp.BarColumn(), rp.MofNCompleteColumn(),
                     rp.TextColumn("visitors"), rp.TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("visitors", total=visitors)
        yield lambda done: bar.update(task, completed=done)


def planted_truth(out: Path, labels: dict[str, str]) -> dict[str, Any]:
    """The truth of a run with planted segments: per variant, the mean effect over its enrolled visitors."""
    from .simulate import SEGMENT_EFFECTS
    from .source import open_source

    con = open_source([str(out)])
    try:
        assigned = con.execute("SELECT DISTINCT visitor, slot || ':' || variant FROM touchpoints WHERE type = "
                               "'exposure' AND arm IN ('treatment', 'holdout') AND visitor IS NOT NULL").fetchall()
    finally:
        con.close()
    per_key: dict[str, list[float]] = {}
    for visitor, key in assigned:
        if visitor in labels:
            per_key.setdefault(key, []).append(SEGMENT_EFFECTS[labels[visitor]].get(key, 0.0))
    effects = {key: sum(values) / len(values) for key, values in sorted(per_key.items())}
    return {"effects": effects, "segments": {"effects": SEGMENT_EFFECTS, "labels": labels}}


def run_simulate(args: argparse.Namespace) -> int:
    from .simulate import HOLDOUT, PERSONAS, TRUE_EFFECTS, Truth, simulate, write_jsonl

    # Absolute: the site's config copy names the sink, and relative sink paths
    # resolve against the config's folder, not the current one.
    out = Path(args.out).resolve()
    truth = truth_path(out)  # never out itself: the name only grows
    chosen = bool(args.persona or args.effect or args.device_effect)
    if chosen and (args.mode != "direct" or args.segments):
        print("simulate: --persona, --effect and --device-effect set up worlds of direct mode without --segments",
              file=sys.stderr)
        return 1
    if args.config is not None and args.mode != "site":
        print("simulate: --config is for site mode: direct mode mirrors example_site's own rules", file=sys.stderr)
        return 1
    unknown = sorted(set(args.persona) - {p.name for p in PERSONAS})
    if unknown:
        print(f"simulate: no persona {', '.join(unknown)}: one of {', '.join(p.name for p in PERSONAS)}",
              file=sys.stderr)
        return 1
    device_effects: dict[str, dict[str, float]] = {}
    for device, key, lift in args.device_effect:
        device_effects.setdefault(device, {})[key] = lift
    world = Truth(segments=args.segments, effects=dict(args.effect), device_effects=device_effects)
    started = time.perf_counter()
    labels: dict[str, str] | None = {} if args.segments else None
    with _progress(args.visitors, args.mode) as progress:
        if args.mode == "site":
            import yaml

            from ..errors import ConfigError
            from .simulate_site import simulate_site

            config = None if args.config is None else Path(args.config).resolve()
            try:
                simulate_site(args.visitors, out, seed=args.seed, progress=progress, segments=args.segments,
                              labels=labels, config=config, holdout=HOLDOUT if config is None else None)
            except ModuleNotFoundError as exc:  # example_site ships with the repository, not the package
                print(f"simulate: {exc}; run from the repository or use --mode direct", file=sys.stderr)
                return 1
            except (OSError, ValueError, yaml.YAMLError, ConfigError) as exc:
                print(f"simulate: {args.config}: {exc}", file=sys.stderr)
                return 1
            with open(out, encoding="utf-8") as fh:
                count = sum(1 for _ in fh)
        else:
            count = write_jsonl(simulate(args.visitors, seed=args.seed, progress=progress, segments=args.segments,
                                         labels=labels, personas=args.persona or None, truth=world), out)
    elapsed = time.perf_counter() - started
    known: dict[str, Any] = {"holdout_share": HOLDOUT, "effects": {**TRUE_EFFECTS, **world.effects}, "goal": "signup",
                             "visitors": args.visitors, "seed": args.seed, "mode": args.mode}
    if args.config is not None:  # each slot's own holdout, recorded on its exposures
        del known["holdout_share"]
        known["config"] = args.config
    if device_effects:
        known["device_effects"] = device_effects  # for the visitors on that device, over "effects"
    if args.persona:
        known["personas"] = sorted(set(args.persona))
    if labels is not None:
        known.update(planted_truth(out, labels))
    truth.write_text(json.dumps(known, indent=2) + "\n", encoding="utf-8")
    print(f"simulate: {count:,} records of {args.visitors:,} visitors in {args.out} ({args.mode} mode, "
          f"{elapsed:.1f} s); true effects in {truth_path(Path(args.out))}")
    return 0
