"""``suggest actions``: what the always-valid readout says to do with each variant, as a patch of personalize.yaml.

A variant whose corrected always-valid interval is above zero is promoted (its
slot keeps a small permanent holdout), one below zero is stopped, one without a
detectable effect once its slot reached the planned sample (:mod:`.plan`) is
retired, and, with ``by``, one that helps in some breakdown cells and hurts in
others gets its rule narrowed to the cells it helps. The patch is a unified diff
of the YAML text, edited line by line so the author's comments and order stay.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .lift import (
    ANY,
    SEGMENT,
    LiftRow,
    Members,
    Outcomes,
    corrected_tests,
    fmt_pp,
    outcomes_sql,
    readout_rows,
    significant,
)
from .plan import Plan, observed, plans_for
from .yaml_text import diff as diff  # the suggest commands and their tests import it from here
from .yaml_text import indent, item, plain, set_holdout, slot_block

if TYPE_CHECKING:
    from ..config import Config

KINDS = ("promote", "stop", "retire", "target", "keep")


@dataclass
class Action:
    kind: str  # one of KINDS
    row: LiftRow
    evidence: str
    caveat: str
    helped: list[str] = field(default_factory=list)  # target: the breakdown values it helps in
    by: str | None = None  # target: the breakdown field


def evidence(row: LiftRow) -> str:
    """The figures an action rests on, one line (it goes into the YAML as a comment too)."""
    ci = row.seq_interval
    lift = "no interval" if ci is None else f"{fmt_pp(ci[0])} pp [{fmt_pp(ci[1])}, {fmt_pp(ci[2])}] always-valid 95 %"
    p = "" if row.p_adjusted is None else f", adjusted p {row.p_adjusted:.3g}"
    return f"{lift}{p}, {row.n_treatment + row.n_holdout:,} visitors"


def decide(rows: Sequence[LiftRow], plans: Mapping[str, Plan], *, metric: str) -> list[Action]:
    """One action per variant of ``metric``'s rows (breakdown cells, if any, decide targeting)."""
    whole = [r for r in rows if r.metric == metric and r.breakdown is None]
    actions = []
    for row in whole:
        # a cell holding all the variant's visitors is the variant again: narrowing to it narrows nothing
        cells = [r for r in rows if r.metric == metric and r.key == row.key and r.breakdown is not None
                 and not r.same_as_whole]
        helps = [c.breakdown["value"] for c in cells if c.breakdown and significant(c) > 0]
        hurts = [c.breakdown["value"] for c in cells if c.breakdown and significant(c) < 0]
        call = significant(row)
        if row.srm:
            actions.append(Action("keep", row, evidence(row), "sample ratio mismatch: the split is off, no call"))
        elif helps and hurts:
            by = cells[0].breakdown["by"] if cells[0].breakdown else "cell"
            actions.append(Action("target", row, evidence(row) + f"; helps {by} {', '.join(helps)}, "
                                  f"hurts {', '.join(hurts)}",
                                  "cells were compared after the fact; the narrowed rule is worth its own test",
                                  helps, by))
        elif call > 0:
            actions.append(Action("promote", row, evidence(row), "a randomized result for the visitors this rule "
                                  "chose; the permanent holdout keeps measuring it"))
        elif call < 0:
            actions.append(Action("stop", row, evidence(row), "a randomized result: the variant lowers conversion"))
        else:
            planned = plans.get(row.slot)
            seen = row.n_treatment + row.n_holdout
            if planned is not None and planned.visitors is not None and seen >= planned.visitors:
                actions.append(Action("retire", row, evidence(row) + f", planned {planned.visitors:,}",
                                      f"no effect of {fmt_pp(planned.mde)} pp or more detected at "
                                      f"{planned.power:.0%} power; smaller ones may remain"))
            else:
                need = "no plan" if planned is None or planned.visitors is None else f"{planned.visitors:,} planned"
                actions.append(Action("keep", row, evidence(row), f"no detectable effect yet ({need}): keep running"))
    return actions


def suggest(con: Any, *, shares: Mapping[str, float], goal: str | None = None, by: str | None = None,
            window_days: float = 30.0, min_sample: int = 100, mde: float | None = None,
            relative_mde: float | None = None, power: float = 0.8, members: Members | None = None) -> list[Action]:
    """``suggest actions`` on the ``touchpoints`` of ``con``: the readout, each slot's plan, the actions.

    ``shares``: each slot's configured holdout share (else the one its exposures
    recorded, else 0.5). ``members``: with ``by`` segment, each visitor's segments (:mod:`.segment_cells`).
    """
    return actions_from_outcomes(outcomes_sql(con, window_days=window_days, goal=goal, by=by, members=members),
                       observed(con, window_days=window_days, goal=goal), shares=shares, goal=goal, by=by,
                       min_sample=min_sample, mde=mde, relative_mde=relative_mde, power=power)


def actions_from_outcomes(found: Mapping[tuple[str, str], Outcomes], traffic: Mapping[str, tuple[float, float, int]], *,
                shares: Mapping[str, float], goal: str | None = None, by: str | None = None, min_sample: int = 100,
                mde: float | None = None, relative_mde: float | None = None, power: float = 0.8) -> list[Action]:
    """The actions of :func:`suggest` from outcomes of one goal (:func:`.lift.outcomes_sql` or
    :func:`.lift.outcomes`) and each slot's traffic (:func:`.plan.observed`; a slot without is not planned,
    so its variants without an effect are kept, never retired). The plan is sized for the readout's
    correction: as many comparisons as the tests it corrects across (:func:`.plan.visitors_needed`)."""
    rows = readout_rows({goal or ANY: found}, by=by, holdout_share=dict(shares) or None, min_sample=min_sample)
    recorded = {r.slot: r.holdout_share for r in rows if r.holdout_share}
    made, _ = plans_for(traffic, lambda slot: shares.get(slot) or recorded.get(slot) or 0.5, mde=mde,
                        relative_mde=relative_mde, power=power, comparisons=max(1, corrected_tests(rows)))
    return decide(rows, {p.slot: p for p in made}, metric=goal or ANY)


def actions_for(con: Any, config: Config, *, goal: str | None = None, by: str | None = None,
                window_days: float = 30.0, min_sample: int = 100, mde: float | None = None,
                relative_mde: float | None = None, power: float = 0.8,
                members: Members | None = None) -> list[Action]:
    """:func:`suggest` with ``config``'s holdout shares: what ``suggest actions`` writes, and the report lists.
    With ``by`` segment, ``members`` are the visitors' segments of ``config`` (worked out if not given)."""
    from .segment_cells import segment_cells

    if by == SEGMENT and members is None:
        members = segment_cells(con, config).members
    shares = {name: float(slot.holdout) for name, slot in config.slots.items() if slot.holdout}
    return suggest(con, shares=shares, goal=goal, by=by, window_days=window_days, min_sample=min_sample, mde=mde,
                   relative_mde=relative_mde, power=power, members=members)


def _promote(lines: list[str], slot: str, promoted: Sequence[Action], share: float) -> None:
    set_holdout(lines, slot, share, [f"promoted {a.row.variant}: {a.evidence}" for a in promoted],
                "permanent holdout: keeps measuring it")


def _remove(lines: list[str], action: Action, why: str) -> None:
    slot_start, slot_end = slot_block(lines, action.row.slot)
    start, end = item(lines, slot_start + 1, slot_end, action.row.variant)
    pad = " " * indent(lines[start])
    lines[start:end] = [f"{pad}# {why} {action.row.variant}: {action.evidence}"]
    _close_if_emptied(lines, start)


def _close_if_emptied(lines: list[str], removed: int) -> None:
    """``rules:`` (or ``variants:``) whose last item was removed would read as null, which does not load:
    it becomes ``[]``, and the slot shows its default."""
    dash = indent(lines[removed])
    key = removed - 1
    while key >= 0 and (not lines[key].strip() or lines[key].lstrip().startswith("#") or indent(lines[key]) > dash
                        or lines[key].lstrip().startswith("- ") and indent(lines[key]) == dash):
        key -= 1
    found = re.match(r"(\s*)([A-Za-z0-9_.-]+):\s*(#.*)?$", lines[key]) if key >= 0 else None
    if found is None:
        return
    base = indent(lines[key])
    after = key + 1  # the list: deeper lines, or items at the key's own indent ("rules:\n- if: ...")
    while after < len(lines) and (not lines[after].strip() or indent(lines[after]) > base
                                  or lines[after].lstrip().startswith("- ") and indent(lines[after]) == base):
        if lines[after].strip() and not lines[after].lstrip().startswith("#"):
            return  # an item is left
        after += 1
    note = found.group(3) or f"# none left: {found.group(2)} removed by suggest actions"
    lines[key] = f"{found.group(1)}{found.group(2)}: []   {note}"


def _target(lines: list[str], action: Action) -> None:
    slot_start, slot_end = slot_block(lines, action.row.slot)
    start, end = item(lines, slot_start + 1, slot_end, action.row.variant)
    by = action.by or "cell"
    values = plain(", ".join(action.helped))  # for the comment; the condition quotes each value
    # quoted: a bare NO (Norway) or on would be read as a boolean by YAML
    cell = f"{{{by}: {{in: [{', '.join(json.dumps(v) for v in action.helped)}]}}}}"
    if by == "segment":  # a segment is named, one at a time (docs/configuration.md)
        named = [f"{{segment: {json.dumps(name)}}}" for name in action.helped]
        cell = named[0] if len(named) == 1 else f"{{any: [{', '.join(named)}]}}"
    for i in range(start, end):
        found = re.match(r"(\s*)(- )?if:\s*(.*?)\s*$", lines[i])
        if not found:
            continue
        head = found.group(1) + (found.group(2) or "")
        pad = indent(lines[i]) + (2 if found.group(2) else 0)
        inline = found.group(3)
        if inline.count("{") != inline.count("}") or inline.count("[") != inline.count("]"):
            raise ValueError(f"{action.row.key}: its if: is a flow mapping over several lines; narrow it by hand")
        note = " " * pad + f"# targeted to {by} {values}: {action.evidence}"
        if inline and not inline.startswith("#"):
            new = [f"{head}if:", note, " " * (pad + 2) + "all:", " " * (pad + 4) + f"- {inline}",
                   " " * (pad + 4) + f"- {cell}"]
            lines[i:i + 1] = new
        else:
            nested_end = i + 1
            while nested_end < end and (not lines[nested_end].strip() or indent(lines[nested_end]) > pad):
                nested_end += 1
            nested = lines[i + 1:nested_end]
            base = min(indent(line) for line in nested if line.strip())
            moved = [" " * (pad + 4) + ("- " if k == 0 else "  ") + line[base:] if line.strip() else line
                     for k, line in enumerate(nested)]
            lines[i:nested_end] = [f"{head}if:" + (f" {inline}" if inline else ""), note, " " * (pad + 2) + "all:",
                                   *moved, " " * (pad + 4) + f"- {cell}"]
        return
    raise ValueError(f"{action.row.key} has no if: to narrow")


def patched(text: str, actions: Sequence[Action], *, permanent_holdout: float) -> str:
    """The config's text with the actions applied (comments and order kept)."""
    lines = text.split("\n")
    promoted: dict[str, list[Action]] = {}
    for action in actions:
        if action.kind == "promote":
            promoted.setdefault(action.row.slot, []).append(action)
    for slot, these in promoted.items():
        _promote(lines, slot, these, permanent_holdout)
    for action in actions:
        if action.kind in ("stop", "retire"):
            _remove(lines, action, {"stop": "stopped", "retire": "retired"}[action.kind])
        elif action.kind == "target":
            _target(lines, action)
    return "\n".join(lines)  # a promotion's note may hold several lines


def load_problem(new: str, path: str) -> str | None:
    """Why the patched text of the config at ``path`` would not load, or None when it loads (templates
    resolved beside ``path``). A bandit left with one variant, say, is for the author to settle."""
    from ..config import load_config, read_yaml
    from ..errors import ConfigError

    with tempfile.TemporaryDirectory(prefix="pmw-actions-") as folder:
        patched_file = Path(folder) / "personalize.yaml"
        patched_file.write_text(new, encoding="utf-8")
        try:
            data = read_yaml(patched_file)[0]
            data.setdefault("base_dir", str(Path(path).resolve().parent))
            load_config(data)
        except ConfigError as exc:
            return str(exc)
    return None
