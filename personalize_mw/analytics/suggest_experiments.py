"""``suggest experiments``: what attribution credits and no holdout has tested, as experiments to run.

Attribution says which variants and pages conversions pass through, not what
they cause. Two kinds of untested credit become proposed experiments, sized by
:mod:`.plan`, in a patch of personalize.yaml:

- a **variant** with a large share of the conversions credited to variants,
  in a slot with no holdout (none configured, none in the records): the slot
  gets ``holdout:``, live once the patch is applied;
- a **page** with a large share of the conversions credited to pages that no
  variant links to (nor a crowd slot recommends): a rule that links to it, for
  the visitors who have not read it, appended to the rules of the slot that
  reaches the most of them. It is written as comments: its link text is for a
  person to write, and a patch merged unread must not put placeholder copy in
  front of visitors. Uncommented, it loads (the tests check).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Config, Slot
from .models import attribute
from .plan import Plan, plans_for
from .source import build_journeys
from .yaml_text import block, key_pad, plain, set_holdout, slot_block

CAVEAT = "correlation, not yet tested"
PROPOSED = "propose"
RECENT_DAYS = 14.0  # traffic a day over the records' last two weeks, as plan's
NOUN = {"variant": "variants", "content": "pages"}


@dataclass
class Candidate:
    by: str  # "variant" (label slot:variant) or "content" (label a page's path)
    label: str
    conversions: float  # credited by the model
    share: float  # of all the conversions the model credits to this kind of touch
    status: str = PROPOSED  # PROPOSED, else a word for why not: tested, shown, skipped
    why: str = ""  # the reason, or where it is proposed

    def evidence(self, model: str, total: float) -> str:
        return (f"{plain(self.label)} has {self.share:.1%} of the {total:,.0f} conversions credited to "
                f"{NOUN[self.by]} ({self.conversions:,.1f}, {model})")


@dataclass
class Experiment:
    kind: str  # "holdout" (a slot's variants) or "content" (a rule linking to a page)
    slot: str
    candidates: list[Candidate]
    plan: Plan | None  # None: the baseline cannot be planned from (why in ``unplanned``)
    baseline_of: str  # whose conversion rate the plan starts from
    unplanned: str = ""
    page: str | None = None  # content: the page linked to
    variant: str | None = None  # content: the proposed rule's variant name
    measured_by: str = ""  # content: the holdout that measures the rule
    new_holdout: bool = False  # content: that holdout is a commented line to add under the slot


@dataclass
class Suggestion:
    model: str
    holdout: float
    totals: dict[str, float]  # by -> conversions credited
    candidates: list[Candidate] = field(default_factory=list)
    experiments: list[Experiment] = field(default_factory=list)


def credit(con: Any, by: str, goal: str | None, lookback_days: float, model: str) -> tuple[list[Candidate], float]:
    """Each label's credited conversions under ``model``, largest first, and their total."""
    found = attribute(build_journeys(con, by=by, goal=goal, lookback_days=lookback_days), model)
    total = float(found.conversions.sum())
    rows = [Candidate(by, label, float(c), float(c) / total if total else 0.0)
            for label, c in zip(found.labels, found.conversions, strict=True)]
    return sorted(rows, key=lambda c: (-c.conversions, c.label)), total


def entrants(con: Any, entry_sql: str, params: dict[str, Any], *, goal: str | None,
             window_days: float) -> tuple[float, float, int]:
    """(conversion rate within ``window_days`` after entering, entrants a day lately, entrants) of the
    visitors ``entry_sql`` selects as (visitor, ts of entering). "Lately": the records' last two weeks
    (their whole span if shorter, and at least a day), as :func:`.plan.observed` counts traffic."""
    goal_filter = "AND c.goal = $goal" if goal is not None else ""
    args = {**params, "window": float(window_days) * 86400.0, "days": RECENT_DAYS}
    if goal is not None:
        args["goal"] = goal
    total, won, recent, span = con.execute(f"""
        WITH entry AS ({entry_sql}),
             won AS (SELECT DISTINCT e.visitor FROM entry e JOIN touchpoints c ON c.visitor = e.visitor
                     WHERE c.type = 'conversion' {goal_filter} AND c.ts > e.ts
                           AND epoch(c.ts) - epoch(e.ts) <= $window),
             bounds AS (SELECT min(ts) AS lo, max(ts) AS hi FROM touchpoints)
        SELECT count(*), (SELECT count(*) FROM won),
               count(*) FILTER (WHERE epoch(hi) - epoch(ts) <= $days * 86400),
               greatest(1.0, least($days, (epoch(any_value(hi)) - epoch(any_value(lo))) / 86400.0))
        FROM entry, bounds""", args).fetchone()
    return (won / total if total else 0.0), recent / float(span or 1.0), int(total)


# The visitors a slot's holdout would split: enrolled visitors (with an id) at their first exposure.
SLOT_ENTRY = """SELECT visitor, min(ts) AS ts FROM touchpoints WHERE type = 'exposure' AND slot = $slot
                AND visitor IS NOT NULL AND coalesce(arm, 'treatment') = 'treatment' GROUP BY visitor"""
# The visitors a rule `not: {viewed: PAGE}` in the slot reaches: at their first view of a page the slot is on
# (its exposures' pages) before they read PAGE.
CONTENT_ENTRY = """
    WITH pages AS (SELECT DISTINCT path FROM touchpoints WHERE type = 'exposure' AND slot = $slot),
         read AS (SELECT visitor, min(ts) AS ts FROM touchpoints
                  WHERE type = 'pageview' AND path = $page AND visitor IS NOT NULL GROUP BY visitor)
    SELECT p.visitor, min(p.ts) AS ts FROM touchpoints p LEFT JOIN read r ON r.visitor = p.visitor
    WHERE p.type = 'pageview' AND p.visitor IS NOT NULL AND p.path IN (SELECT path FROM pages)
          AND (r.ts IS NULL OR p.ts < r.ts)
    GROUP BY p.visitor"""


def _holdout_visitors(con: Any) -> dict[str, int]:
    rows = con.execute("SELECT slot, count(DISTINCT visitor) FROM touchpoints WHERE type = 'exposure' "
                       "AND arm = 'holdout' AND slot IS NOT NULL GROUP BY slot").fetchall()
    return {slot: int(n) for slot, n in rows}


def _templates(config: Config, slot: Slot) -> Iterator[tuple[str, str, str | None]]:
    """(variant, template text, the page its ``content:`` names) of each rule and variant of the slot."""
    options: list[Any] = [*slot.rules, *slot.variants]
    for stage in slot.stages.values():
        options.extend(stage if isinstance(stage, list) else [stage])
    for option in options:
        text = option.template
        if text is None and option.template_file is not None:
            try:
                text = config.resolve(option.template_file).read_text(encoding="utf-8")
            except OSError:  # the loader found it; gone since: its links are unknown, not an error here
                text = ""
        yield option.variant, text or "", getattr(option, "content", None)


_HREF = re.compile(r"""href\s*=\s*["']?(/[^"'\s?#>]*)""")


def showing(config: Config) -> list[tuple[str, bool, str]]:
    """What the slots put in front of visitors: (page or prefix, is a prefix, who: slot:variant or slot)."""
    found: list[tuple[str, bool, str]] = []
    for name, slot in config.slots.items():
        for variant, text, content in _templates(config, slot):
            found.extend((path, False, f"{name}:{variant}") for path in _HREF.findall(text))
            if content:
                found.append((content, False, f"{name}:{variant}"))
        strategies = [slot.strategy] if isinstance(slot.strategy, str) else list(slot.strategy or ())
        if "crowd" in strategies:  # recommends the pages read together under its paths (default: all)
            crowd = (slot.model_extra or {}).get("crowd") or {}
            paths = crowd.get("paths", ["/"]) if isinstance(crowd, dict) else ["/"]
            found.extend((prefix, True, f"{name} (crowd)") for prefix in
                         ([paths] if isinstance(paths, str) else paths))
    return found


def _goal_page(config: Config, page: str) -> str | None:
    for name, goal in config.goals.items():
        if page == goal.path or (goal.path_prefix is not None and page.startswith(goal.path_prefix)):
            return name
    return None


def _content_status(candidate: Candidate, config: Config, shown: Sequence[tuple[str, bool, str]],
                    ignore: Sequence[str]) -> None:
    page = candidate.label
    by = sorted({who for target, prefix, who in shown if (page.startswith(target) if prefix else page == target)})
    goal = _goal_page(config, page)
    if goal is not None:
        candidate.status, candidate.why = "skipped", f"the {goal} goal's page"
    elif page != plain(page) or not page.startswith("/"):  # e.g. %0D decoded: a line break in YAML and HTML
        candidate.status, candidate.why = "skipped", "not a page path: it holds a control or line-break character"
    elif page == "/":
        candidate.status, candidate.why = "skipped", "the home page: every page links to it"
    elif any(page.startswith(prefix) for prefix in ignore):
        candidate.status, candidate.why = "skipped", "under --ignore"
    elif by:
        candidate.status, candidate.why = "shown", f"already in front of visitors: {', '.join(by)}"


@dataclass(frozen=True)
class Effect:
    """What an experiment is sized for, as ``plan``'s --mde (points), --relative-mde and --power."""

    mde: float | None = None
    relative_mde: float | None = None
    power: float = 0.8


def _plan(slot: str, figures: tuple[float, float, int], share: float, effect: Effect) -> tuple[Plan | None, str]:
    rate, daily, visitors = figures
    if not 0 < rate < 1:
        return None, f"{visitors:,} visitors converted at {rate:.0%}: no baseline to plan from"
    made, _ = plans_for({slot: (rate, daily, 0)}, lambda _slot: share, mde=effect.mde,
                        relative_mde=effect.relative_mde, power=effect.power)
    return made[0], ""


def _rule_slots(config: Config) -> list[str]:
    """The slots a rule can be appended to: ``rules:`` first match wins, and a last rule takes no visitor from
    the others (a ``variants:`` split would move visitors between its variants)."""
    return [name for name, slot in config.slots.items() if slot.rules and slot.strategy in (None, "rules")]


def suggest(con: Any, config: Config, *, goal: str | None = None, model: str = "shapley", top: int = 5,
            min_credit: float = 0.1, holdout: float = 0.2, mde: float | None = None,
            relative_mde: float | None = None, power: float = 0.8, window_days: float = 30.0,
            lookback_days: float = 30.0, ignore: Sequence[str] = ()) -> Suggestion:
    """The ``top`` variants and pages by credit with at least ``min_credit`` of it, each with its status;
    the experiments proposed for the untested ones, planned for ``mde`` (as ``plan``) at ``holdout``."""
    variants, variant_total = credit(con, "variant", goal, lookback_days, model)
    pages, page_total = credit(con, "content", goal, lookback_days, model)
    out = Suggestion(model, holdout, {"variant": variant_total, "content": page_total})
    held = _holdout_visitors(con)
    untested: dict[str, list[Candidate]] = {}
    looked = [c for c in variants if c.share >= min_credit][:top]
    for candidate in looked:
        slot = candidate.label.split(":", 1)[0]
        configured = config.slots.get(slot)
        if configured is None:
            candidate.status, candidate.why = "skipped", f"slot {slot!r} is not in the config"
        elif configured.holdout:
            candidate.status, candidate.why = "tested", (f"{slot} has holdout: {configured.holdout:g} in the "
                                                         "config (suggest actions reads it)")
        elif held.get(slot):
            candidate.status, candidate.why = "tested", (f"the records hold {held[slot]:,} holdout visitors of "
                                                         f"{slot} (suggest actions reads them)")
        else:
            untested.setdefault(slot, []).append(candidate)
            candidate.why = f"holdout: {holdout:g} for {slot}"
    effect = Effect(mde, relative_mde, power)
    for slot, these in untested.items():
        figures = entrants(con, SLOT_ENTRY, {"slot": slot}, goal=goal, window_days=window_days)
        made, unplanned = _plan(slot, figures, holdout, effect)
        out.experiments.append(Experiment("holdout", slot, these, made, "the observed conversion rate of the "
                                          "slot's visitors: there is no holdout yet", unplanned))
    shown = showing(config)
    slots = _rule_slots(config)
    looked_pages = [c for c in pages if c.share >= min_credit][:top]
    for candidate in looked_pages:
        _content_status(candidate, config, shown, ignore)
        if candidate.status == PROPOSED:
            _content_experiment(con, config, candidate, slots, out, effect, goal=goal, window_days=window_days)
    out.candidates = looked + looked_pages
    return out


def _content_experiment(con: Any, config: Config, candidate: Candidate, slots: Sequence[str], out: Suggestion,
                        effect: Effect, *, goal: str | None, window_days: float) -> None:
    reach = {slot: entrants(con, CONTENT_ENTRY, {"slot": slot, "page": candidate.label}, goal=goal,
                            window_days=window_days) for slot in slots}
    reach = {slot: figures for slot, figures in reach.items() if figures[2]}
    if not reach:
        candidate.status, candidate.why = "skipped", "no slot with rules: reaches visitors who have not read it"
        return
    slot = max(reach, key=lambda s: reach[s][2])  # the most visitors reached; ties: the config's order
    configured = config.slots[slot].holdout
    proposed = any(e.kind == "holdout" and e.slot == slot for e in out.experiments)
    share = float(configured) if configured else out.holdout
    measured = (f"the slot's holdout: {configured:g}" if configured else
                f"the holdout: {out.holdout:g} proposed above" if proposed else
                f"a holdout: {out.holdout:g} to uncomment under {slot}:")
    made, unplanned = _plan(slot, reach[slot], share, effect)
    taken = {variant for variant, _, _ in _templates(config, config.slots[slot])}
    taken.update(e.variant for e in out.experiments if e.slot == slot and e.variant)
    base = ("suggested-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", candidate.label).strip("-") or "page"))[:56]
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    candidate.why = f"a rule linking to it in {slot}"
    out.experiments.append(Experiment("content", slot, [candidate], made, "the observed conversion rate of the "
                                      "visitors the rule would reach", unplanned, candidate.label, name, measured,
                                      new_holdout=not configured and not proposed))


# ------------------------------------------------------------------ the patch

def plan_lines(experiment: Experiment) -> list[str]:
    """The plan as comment lines (without the ``# ``)."""
    p = experiment.plan
    if p is None:
        return [f"plan: none yet: {experiment.unplanned}"]
    needed = "out of reach (over 10^10 visitors)" if p.visitors is None else f"{p.visitors:,} visitors (both arms)"
    days = "" if p.days is None else f"; about {p.days:,.1f} days at {p.daily_visitors:,.0f} visitors a day lately"
    return [f"plan: {needed} to detect {p.mde * 100:+.2f} pp with {p.power:.0%} power at a {p.holdout_share:.0%} "
            "holdout (personalize-mw plan, always-valid readout),",
            f"  from a baseline of {p.baseline:.2%}, {experiment.baseline_of}{days}"]


def _header(experiment: Experiment, suggestion: Suggestion) -> list[str]:
    what = ("a holdout, to measure what this slot's variants cause" if experiment.kind == "holdout" else
            f"show {plain(experiment.page or '')} to the visitors who have not read it")
    evidence = [c.evidence(suggestion.model, suggestion.totals[c.by]) for c in experiment.candidates]
    if experiment.kind == "content":
        evidence = [f"{evidence[0]}; no variant links to it"]
    return [f"PROPOSED EXPERIMENT ({CAVEAT}): {what}", *evidence, *plan_lines(experiment)]


def _yaml_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _content_rule(experiment: Experiment) -> list[str]:
    page = experiment.page or ""
    # Braces would be Jinja syntax in the template: as character references they are the same link.
    href = html.escape(page, quote=True).replace("{", "&#123;").replace("}", "&#125;")
    return [f"- id: {experiment.variant}",
            f"  if: {{not: {{viewed: {_yaml_string(page)}}}}}",
            f"  variant: {experiment.variant}",
            "  template: |",
            f'    <p><a href="{href}">WRITE THE LINK TEXT</a></p>',
            "    {{ slot.default }}"]


def _add_content(lines: list[str], experiment: Experiment, suggestion: Suggestion, *, holdout_line: bool) -> None:
    start, end = slot_block(lines, experiment.slot)
    pad = key_pad(lines, start, end)
    rules = next((i for i in range(start + 1, end) if re.match(rf"{pad}rules:\s*(#.*)?$", lines[i])), None)
    if rules is None:  # e.g. rules: [...] on one line
        raise ValueError(f"slot {experiment.slot!r} has no block `rules:` to append the proposed rule to")
    rules_end = block(lines, rules)
    item_pad = key_pad(lines, rules, rules_end)
    rule = _content_rule(experiment)
    notes = [*_header(experiment, suggestion), f"measured by {experiment.measured_by}",
             f"TO RUN IT: write the link text, then remove the '# ' before the {len(rule)} lines below"]
    lines[rules_end:rules_end] = [f"{item_pad}# {line}" for line in notes + rule]
    if holdout_line:
        lines[start + 1:start + 1] = [
            f"{pad}# TO RUN a rule proposed below, remove the '# ' before the next line too",
            f"{pad}# holdout: {suggestion.holdout:g}   # experiment: held-out visitors see the page's own content"]


def patched(text: str, suggestion: Suggestion) -> str:
    """The config's text with the proposed experiments (comments and order kept)."""
    lines = text.split("\n")
    for experiment in suggestion.experiments:
        if experiment.kind == "holdout":
            set_holdout(lines, experiment.slot, suggestion.holdout, _header(experiment, suggestion),
                        "experiment: held-out visitors see the page's own content")
    commented: set[str] = set()  # slots given a holdout line to uncomment: one each
    for experiment in suggestion.experiments:
        if experiment.kind == "content":
            needs = experiment.new_holdout and experiment.slot not in commented
            _add_content(lines, experiment, suggestion, holdout_line=needs)
            commented.update([experiment.slot] if needs else [])
    return "\n".join(lines)


def summary(suggestion: Suggestion) -> list[str]:
    """One line per variant and page looked at: proposed, tested, shown or skipped, and why."""
    out = []
    for c in suggestion.candidates:
        line = f"{c.status:8} {c.evidence(suggestion.model, suggestion.totals[c.by])}; {c.why}"
        if c.status == PROPOSED:
            experiment = next(e for e in suggestion.experiments if c in e.candidates)
            p = experiment.plan
            plan = (f"plan: {experiment.unplanned}" if p is None else "plan: out of reach" if p.visitors is None
                    else f"{p.visitors:,} visitors" + ("" if p.days is None else f", {p.days:,.1f} days"))
            line += f"; {plan}; {CAVEAT}"
        out.append(line)
    return out

