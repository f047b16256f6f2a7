"""The report's "What to do next": the three ``suggest`` commands in one list.

Each item has its evidence, its caveat and the exact command that writes its
patch (or, for segments, its YAML): the report says what to do, the command
writes the change a person reviews, nothing is applied from here. Segments
are a pointer only: clustering takes seconds on a large input, which every
report would pay (docs/suggest.md).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .suggest_actions import actions_for
from .suggest_experiments import CAVEAT, plan_lines, suggest

if TYPE_CHECKING:
    from ..config import Config

ACTION_KINDS = ("promote", "stop", "retire", "target")


@dataclass
class Step:
    kind: str  # an action of suggest actions, "experiment" or "segments"
    subject: str  # slot:variant, a slot or a page
    evidence: str
    caveat: str
    command: str  # writes the patch (segments: the YAML)


@dataclass
class Options:
    """What the report was run with, carried into the commands so their figures are the report's."""

    inputs: Sequence[str]
    config: str
    goal: str | None = None
    by: str | None = None
    window_days: float = 30.0
    lookback_days: float = 30.0
    min_sample: int = 100
    mde: float | None = None
    relative_mde: float | None = None
    power: float = 0.8
    until: datetime | None = None  # the same records: every suggest command reads these as the report did
    unit: str = "visitor"
    skip_bad_lines: bool = False

    def command(self, what: str, out: str, *extra: str) -> str:
        words = ["personalize-mw", "suggest", what, *self.inputs, "--config", self.config]
        if self.until is not None:
            words += ["--until", self.until.isoformat()]
        if self.unit != "visitor":
            words += ["--unit", self.unit]
        if self.skip_bad_lines:
            words.append("--skip-bad-lines")
        if self.goal:
            words += ["--goal", self.goal]
        if self.lookback_days != 30.0:
            words += ["--lookback-days", f"{self.lookback_days:g}"]
        words += list(extra)
        if what != "segments":
            if self.window_days != 30.0:
                words += ["--window-days", f"{self.window_days:g}"]
            if what == "actions" and self.min_sample != 100:
                words += ["--min-sample", str(self.min_sample)]
            if self.mde is not None:
                words += ["--mde", f"{self.mde:g}"]
            if self.relative_mde is not None:
                words += ["--relative-mde", f"{self.relative_mde:g}"]
            if self.power != 0.8:
                words += ["--power", f"{self.power:g}"]
        return shlex.join([*words, "--out", out])


def steps(con: Any, config: Config, options: Options) -> tuple[list[Step], int]:
    """The list, and how many variants have no call yet (keep running). The actions are computed as
    ``suggest actions`` computes them (not from the report's readout, whose guardrails add tests to the
    correction), so each item is what its command writes."""
    by = ("--by", options.by) if options.by else ()
    actions = actions_for(con, config, goal=options.goal, by=options.by, window_days=options.window_days,
                          min_sample=options.min_sample, mde=options.mde, relative_mde=options.relative_mde,
                          power=options.power)
    found = [Step(a.kind, a.row.key, a.evidence, a.caveat, options.command("actions", "actions.patch", *by))
             for a in actions if a.kind in ACTION_KINDS]
    kept = sum(a.kind == "keep" for a in actions)
    suggestion = suggest(con, config, goal=options.goal, window_days=options.window_days,
                         lookback_days=options.lookback_days, mde=options.mde, relative_mde=options.relative_mde,
                         power=options.power)
    for experiment in suggestion.experiments:
        evidence = [c.evidence(suggestion.model, suggestion.totals[c.by]) for c in experiment.candidates]
        subject = (f"holdout: {suggestion.holdout:g} for {experiment.slot}" if experiment.kind == "holdout" else
                   f"a rule in {experiment.slot} linking to {experiment.page}")
        planned = " ".join(line.strip() for line in plan_lines(experiment))
        found.append(Step("experiment", subject, "; ".join([*evidence, planned]),
                          f"{CAVEAT}: conversions pass through it, which is not that it causes them",
                          options.command("experiments", "experiments.patch")))
    found.append(Step("segments", "groups of visitors to personalize for",
                      "not computed in the report (clustering takes seconds on a large input)",
                      f"{CAVEAT}: a segment's conversion rate is not what a different experience would do",
                      options.command("segments", "segments.yaml")))
    return found, kept
