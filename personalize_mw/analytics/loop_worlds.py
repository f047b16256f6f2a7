"""Simulated worlds with a known answer for ``suggest actions`` (issue 13's properties).

Each world is a :func:`.simulate.simulate` set-up (some personas, a
:class:`.simulate.Truth`) and its number of visitors, taken from ``plan``:

- :func:`called_world`: linkedin visitors see ``hero:linkedin``, +6 points on their
  4 % baseline; reviewers see ``hero:reviews``, no effect; ``cta:benchmark`` has
  none. The readout corrects across 6 tests (3 variants, a conversion and a
  revenue test each), so the plan is for 6 comparisons at 90 % power, and the
  visitors are those that put the planned number in hero:linkedin's experiment.
- :func:`targeted_world`: competitor-search visitors see ``hero:switcher``, +10
  points on mobile, -5 on desktop, none on a tablet. With ``by="device"`` the
  readout corrects across 16 tests (2 variants, each whole and in 3 device cells);
  each of the two cells gets the visitors for sqrt(0.9) power, so that both are
  detected with 90 %.

:func:`actions` decides on one seed's :func:`records` as the command does; shared by
tests/test_loop_properties.py and ``bench/suggest.py --loop-seeds``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .lift import outcomes
from .plan import visitors_needed
from .simulate import CONSENT_CHOICES, DEVICES, HOLDOUT, PERSONAS, Truth, simulate, write_jsonl
from .source import open_source, read_once
from .suggest_actions import Action, actions_from_outcomes, suggest

GOAL = "signup"
POWER = 0.9
ENROLLED = dict(CONSENT_CHOICES)["all"]  # the visitors with an id: the ones in the experiments
_BASE = {p.name: p.base for p in PERSONAS}
_SHARE = {p.name: p.share for p in PERSONAS}


@dataclass(frozen=True)
class World:
    personas: tuple[str, ...]
    truth: Truth
    visitors: int
    by: str | None  # suggest actions --by
    mde: float      # suggest's own plan (for retiring), in points
    comparisons: int  # the tests its readout corrects across, which its visitors were planned for
    positive: str   # the variant with the effect to find
    null: str | None = None  # a variant without any


def called_world() -> World:
    lift, comparisons = 0.06, 6
    needed = visitors_needed(_BASE["linkedin"], lift, HOLDOUT, POWER, comparisons=comparisons)
    assert needed is not None
    linkedin = _SHARE["linkedin"] / (_SHARE["linkedin"] + _SHARE["reviewer"])
    truth = Truth(effects={"hero:linkedin": lift, "hero:reviews": 0.0, "cta:benchmark": 0.0})
    return World(("linkedin", "reviewer"), truth, math.ceil(needed / (linkedin * ENROLLED)), None, lift * 100,
                 comparisons, "hero:linkedin", "hero:reviews")


def targeted_world() -> World:
    up, down, comparisons = 0.10, 0.05, 16
    power = math.sqrt(POWER)
    share = dict(DEVICES)
    base = _BASE["switcher"]
    mobile = visitors_needed(base, up, HOLDOUT, power, comparisons=comparisons)
    desktop = visitors_needed(base - down, down, HOLDOUT, power, comparisons=comparisons)
    assert mobile is not None and desktop is not None
    truth = Truth(effects={"hero:switcher": 0.0, "cta:benchmark": 0.0},
                  device_effects={"mobile": {"hero:switcher": up}, "desktop": {"hero:switcher": -down}})
    visitors = max(mobile / share["mobile"], desktop / share["desktop"]) / ENROLLED
    return World(("switcher",), truth, math.ceil(visitors), "device", up * 100, comparisons, "hero:switcher")


def records(world: World, seed: int) -> list[dict[str, Any]]:
    """One seed of the world's visitors (direct mode)."""
    return list(simulate(world.visitors, seed=seed, personas=world.personas, truth=world.truth))


def actions(world: World, found: list[dict[str, Any]], folder: Path | None = None) -> dict[str, Action]:
    """slot:variant -> its action on the records ``found``: from their outcomes counted in Python (no
    traffic, so no plan: a variant without an effect is kept, not retired), or, given a ``folder`` to write
    them into, the command's whole way (JSONL, DuckDB, readout, plan)."""
    if folder is None:
        counted = outcomes(found, goal=GOAL, by=world.by)
        chosen = actions_from_outcomes(counted, {}, shares={}, goal=GOAL, by=world.by, mde=world.mde, power=POWER)
    else:
        path = folder / "records.jsonl"
        write_jsonl(iter(found), path)
        con = read_once(open_source([str(path)]))
        try:
            chosen = suggest(con, shares={}, goal=GOAL, by=world.by, mde=world.mde, power=POWER)
        finally:
            con.close()
    return {a.row.key: a for a in chosen}
