"""``personalize-mw suggest <what>``: suggestions a person reviews as YAML: ``segments``, ``actions``,
``experiments``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .command import add_input_arguments, share_argument
from .days import days_argument
from .lift import BY_CHOICES
from .models import MODELS
from .plan_command import add_effect_arguments
from .segment_defaults import DEPTH, MAX_K, MIN_SHARE

SEGMENTS = """\
Clusters the consenting visitors (records with a visitor id), each as they were
before their first conversion, by what the records say: pages and sections
read (once, twice), the session's channel (with --config: catalog tags,
journey stages); the rules may also name the last request's device and
country, where the records carry them. The number of
groups is the latent class model's (a Bernoulli mixture) with the lowest BIC
for 2 to --max-k groups; a decision tree of --depth then describes the groups
as conditions the engine evaluates. Groups under --min-share of the visitors
are merged into the nearest group (or, --small drop, left to the default).
Writes a `segments:` block to merge into personalize.yaml, with each segment's
size, conversion rate and what sets it apart as comments. See docs/suggest.md.
"""


ACTIONS = """\
Reads the lift readout (always-valid 95 % intervals, p-values Holm-corrected
across its rows) and says, per variant: promote (its interval is above zero: the
slot keeps a --permanent-holdout), stop (below zero), retire (no effect found
once the slot reached the sample `personalize-mw plan` sizes for --mde at
--power) or keep running; with --by, a variant that helps in some values of the
field and hurts in others gets its rule's `if:` narrowed to where it helps.
Writes a unified diff of --config (apply it with `patch -p0` or `git apply`;
nothing is changed here), the evidence as YAML comments in the added lines,
and a summary on stderr. See docs/suggest.md.
"""

EXPERIMENTS = """\
Attribution (--by variant and --by content, --model) says which variants and
pages conversions pass through: correlation, not yet tested. Of the --top
variants and pages with at least --min-credit of the credited conversions, a
variant whose slot has no holdout (none in --config, none in the records) gets
one: the patch adds `holdout: --holdout` to its slot. A page no variant links
to (nor a crowd slot recommends; goal pages, the home page and --ignore left
out) gets a rule linking to it for the visitors who have not read it, written
as comments to complete and uncomment, in the rules: slot that reaches the most
of them. Each is planned as `personalize-mw plan` does (--mde, --power), from
the observed conversion rate of the visitors it would split. Writes a unified
diff of --config (apply it with `patch -p0`; nothing is changed here), the
evidence and the plan as YAML comments, and a summary on stderr. See
docs/suggest.md.
"""


def _patch_parser(what: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str,
                  description: str, config_reads: str) -> argparse.ArgumentParser:
    """A suggestion that is a patch of --config: the inputs, --config and --out."""
    parser = what.add_parser(name, help=summary, description=description,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(parser)
    parser.add_argument("--config", required=True, help=f"personalize.yaml: the file the patch is for, {config_reads}")
    parser.add_argument("--out", help="patch file to write (default: standard output; the summary goes to stderr)")
    return parser


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    suggest = commands.add_parser("suggest", help="suggestions as YAML to review: segments, actions, "
                                 "experiments")
    what = suggest.add_subparsers(dest="what", required=True, metavar="WHAT")
    segments = what.add_parser("segments", help="segments found by clustering the visitors, as YAML conditions",
                               description=SEGMENTS, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_input_arguments(segments)
    segments.add_argument("--config", help="personalize.yaml: its goal pages are not features, its segment names "
                          "are not reused, and the output is checked to load with it")
    segments.add_argument("--content", choices=("prefix", "tag"), default="prefix",
                          help="content read by path prefix (/blog/) or page (default), or, with --config, the "
                          "pages of its crowd catalogs by their tags")
    segments.add_argument("--stages", action="store_true",
                          help="add the journey stage of --config as a feature; it is worked out from pages, "
                          "visits and goals, so it weighs what the other features say a second time")
    segments.add_argument("--out", help="YAML file to write (default: standard output)")
    segments.add_argument("--ignore", action="append", default=[], metavar="PREFIX",
                          help="paths under this prefix are no feature (steps of converting, e.g. /signup); "
                          "repeatable")
    segments.add_argument("--min-share", type=float, default=MIN_SHARE,
                          help="smallest segment worth a different experience, as a share of the visitors "
                          f"(default {MIN_SHARE})")
    segments.add_argument("--small", choices=("merge", "drop"), default="merge",
                          help="what happens to a smaller group: merged into the nearest (default) or dropped")
    segments.add_argument("--max-k", type=int, default=MAX_K, help=f"most groups to try (default {MAX_K})")
    segments.add_argument("--depth", type=int, default=DEPTH,
                          help=f"depth of the rules' decision tree (default {DEPTH})")
    segments.add_argument("--seed", type=int, default=0, help="random seed of the model fits (default 0)")
    segments.set_defaults(run=run_segments)
    actions = _patch_parser(what, "actions", "what the lift readout says to do with each variant, as a patch of "
                            "personalize.yaml", ACTIONS, "and each slot's holdout share")
    actions.add_argument("--by", choices=BY_CHOICES, help="also look at each value of this field (segment: each "
                         "segment of --config, at the first exposure): a variant that "
                         "helps in some and hurts in others gets its rule narrowed to where it helps")
    actions.add_argument("--permanent-holdout", type=share_argument, default=0.05,
                         help="the holdout a promoted variant's slot keeps (default 0.05)")
    actions.add_argument("--window-days", type=days_argument, default=30.0, help="as for lift (default 30)")
    actions.add_argument("--min-sample", type=int, default=100, help="as for lift (default 100)")
    add_effect_arguments(actions)  # the planned sample a variant without an effect is retired after
    actions.set_defaults(run=run_actions)
    experiments = _patch_parser(what, "experiments", "untested variants and pages with large attributed credit, "
                                "as proposed experiments in a patch of personalize.yaml", EXPERIMENTS,
                                "its holdouts, goals and the pages its variants link to")
    experiments.add_argument("--model", choices=MODELS, default="shapley",
                             help="the attribution model of the credit (default shapley: each conversion shared "
                             "equally by the variants or pages its journey saw, exactly; no order or position rule)")
    experiments.add_argument("--top", type=int, default=5, help="variants and pages to look at, most credited first "
                             "(default 5 of each)")
    experiments.add_argument("--min-credit", type=share_argument, default=0.1,
                             help="smallest share of the credited conversions worth an experiment (default 0.1)")
    experiments.add_argument("--holdout", type=share_argument, default=0.2,
                             help="the holdout share proposed (default 0.2: the variants are live and believed in; "
                             "a 20 %% holdout gives up fewer conversions over the test than 0.5 if they help, for "
                             "1.56 times the visitors)")
    experiments.add_argument("--ignore", action="append", default=[], metavar="PREFIX",
                             help="pages under this prefix get no experiment (steps of converting, e.g. /signup); "
                             "repeatable")
    experiments.add_argument("--window-days", type=days_argument, default=30.0,
                             help="conversions within this many days count, for the plan's baseline (default 30)")
    add_effect_arguments(experiments)  # what the proposed experiments are sized for
    experiments.set_defaults(run=run_experiments)


def run_segments(args: argparse.Namespace) -> int:
    import duckdb

    from ..cli import load_or_status
    from ..errors import PersonalizeError
    from .segment_suggest import suggest_segments

    config = None
    if args.config is not None:
        loaded = load_or_status(args.config)
        if isinstance(loaded, int):
            return loaded
        config = loaded
    command = " ".join(["personalize-mw", "suggest", "segments", *sys.argv[3:]]) if sys.argv[1:3] == [
        "suggest", "segments"] else "personalize-mw suggest segments"
    try:
        found = suggest_segments(args.inputs, config=config, goal=args.goal, ignore=args.ignore,
                                 min_share=args.min_share, small=args.small, max_k=args.max_k, depth=args.depth,
                                 seed=args.seed, skip_bad_lines=args.skip_bad_lines, command=command,
                                 with_stages=args.stages, by_tag=args.content == "tag")
    except (OSError, ValueError, duckdb.Error, PersonalizeError) as exc:
        print(f"suggest segments: {exc}", file=sys.stderr)
        return 1
    if args.out in (None, "-"):
        sys.stdout.write(found.text)
    else:
        Path(args.out).write_text(found.text, encoding="utf-8")
        sizes = ", ".join(f"{n.name} {n.segment.visitors:,}" for n in found.named)
        print(f"suggest segments: {len(found.named)} segments of {found.fit.visitors:,} visitors in {args.out} "
              f"({sizes})" + ("; what was merged or dropped is in its header" if found.fit.notes else ""))
    return 0


def run_actions(args: argparse.Namespace) -> int:
    import duckdb

    from ..cli import load_or_status
    from ..errors import PersonalizeError
    from .lift_command import opened_for, segment_members
    from .suggest_actions import actions_for, diff, load_problem, patched

    loaded = load_or_status(args.config)
    if isinstance(loaded, int):
        return loaded
    try:
        text = Path(args.config).read_text(encoding="utf-8")
        con = opened_for(args)
        segments = segment_members(con, args.by, args.config, "suggest actions")
        actions = actions_for(con, loaded, goal=args.goal, by=args.by, window_days=args.window_days,
                              min_sample=args.min_sample, mde=args.mde, relative_mde=args.relative_mde,
                              power=args.power, members=segments.members if segments else None)
        new = patched(text, actions, permanent_holdout=args.permanent_holdout)
        patch, problem = diff(text, new, args.config), load_problem(new, args.config)
    except (OSError, ValueError, duckdb.Error, PersonalizeError) as exc:  # e.g. a torn JSONL line
        print(f"suggest actions: {exc}", file=sys.stderr)
        return 1
    for action in actions:
        print(f"{action.kind:8} {action.row.key}: {action.evidence}; {action.caveat}", file=sys.stderr)
    if not actions:
        print("suggest actions: no variant with holdout visitors in the records", file=sys.stderr)
    if args.out in (None, "-"):
        sys.stdout.write(patch)
    else:
        Path(args.out).write_text(patch, encoding="utf-8")
        print(f"suggest actions: patch in {args.out}; apply it with `patch -p0 < {args.out}`", file=sys.stderr)
    if problem is not None:
        print(f"suggest actions: the patched config would not load; edit it after applying:\n{problem}",
              file=sys.stderr)
        return 1
    return 0


def run_experiments(args: argparse.Namespace) -> int:
    import duckdb

    from ..cli import load_or_status
    from ..errors import PersonalizeError
    from .source import open_source, read_once
    from .suggest_actions import load_problem
    from .suggest_experiments import patched, suggest, summary
    from .yaml_text import diff

    loaded = load_or_status(args.config)
    if isinstance(loaded, int):
        return loaded
    if not loaded.slots:
        print(f"suggest experiments: {args.config} has no slots: no experiment to propose in it", file=sys.stderr)
        return 1
    if args.top < 1:
        print("suggest experiments: --top must be at least 1", file=sys.stderr)
        return 1
    try:
        text = Path(args.config).read_text(encoding="utf-8")
        con = read_once(open_source(args.inputs, skip_bad_lines=args.skip_bad_lines, until=args.until,
                                    unit=args.unit))
        found = suggest(con, loaded, goal=args.goal, model=args.model, top=args.top, min_credit=args.min_credit,
                        holdout=args.holdout, mde=args.mde, relative_mde=args.relative_mde, power=args.power,
                        window_days=args.window_days, lookback_days=args.lookback_days, ignore=args.ignore)
        new = patched(text, found)
        patch, problem = diff(text, new, args.config), load_problem(new, args.config)
    except (OSError, ValueError, duckdb.Error, PersonalizeError) as exc:  # e.g. a torn JSONL line
        print(f"suggest experiments: {exc}", file=sys.stderr)
        return 1
    if problem is not None:  # never written: a proposal is reviewed, not repaired
        print(f"suggest experiments: the patched config would not load, so no patch is written:\n{problem}",
              file=sys.stderr)
        return 1
    for line in summary(found):
        print(line, file=sys.stderr)
    if not found.candidates:
        print(f"suggest experiments: no variant or page has {args.min_credit:.0%} of the credited conversions",
              file=sys.stderr)
    if args.out in (None, "-"):
        sys.stdout.write(patch)
    else:
        Path(args.out).write_text(patch, encoding="utf-8")
        print(f"suggest experiments: {len(found.experiments)} proposed in {args.out}; review it, then apply it "
              f"with `patch -p0 < {args.out}`", file=sys.stderr)
    return 0
