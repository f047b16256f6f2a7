"""``strategy: journey``: one variant per journey stage (contextualization).

Stages are defined once for the site (``journey: stages:`` in YAML) in funnel
order, each with a condition over goals, viewed content, visits, UTM...; the
visitor is in the *last* stage whose condition holds (a stage without ``if:``
always holds: put it first). Evaluated on every request, from the cookie.

A slot lists variants per stage (``stages: {decision: {...}}``, or a list to
fall back through). A variant with ``goal:`` is a call to action for that
goal: never shown once the visitor has completed it. A variant with
``content:`` recommends that page: never shown once the visitor has read it.
When no variant of the stage is left, the strategy passes (next strategy, or
the default content).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .protocol import BuildContext, Decision, SlotSpec, VariantSpec
from .seen import has_completed, has_read
from .slot import compile_variants

if TYPE_CHECKING:
    from ..core.context import RequestContext
    from ..core.visitor import Profile
    from .conditions import Condition


@dataclass(frozen=True)
class Stages:
    """The site's journey stages, compiled once per config and shared by its slots."""

    names: tuple[str, ...]
    conditions: tuple[Condition | None, ...]

    def stage_of(self, visitor: Profile | None, ctx: RequestContext, now: float) -> str | None:
        """The furthest stage whose condition holds (None only when no stage holds)."""
        for index in range(len(self.names) - 1, -1, -1):
            condition = self.conditions[index]
            if condition is None or condition(ctx, visitor, now):
                return self.names[index]
        return None


def site_stages(build: BuildContext) -> Stages:
    found = build.shared.get("journey.stages")
    if found is None:
        stages = build.config.journey.stages
        problems = []
        conditions: list[Condition | None] = []
        for index, stage in enumerate(stages):
            if stage.if_ is None:
                conditions.append(None)
                continue
            try:
                conditions.append(build.compile_condition(stage.if_, ("journey", "stages", index, "if")))
            except ConfigError as exc:
                problems.extend(exc.problems)
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            problems.append((("journey", "stages"), "a stage name is listed twice"))
        if problems:
            raise ConfigError(problems)
        found = build.shared.setdefault("journey.stages", Stages(tuple(names), tuple(conditions)))
    return found


@dataclass(frozen=True, slots=True)
class _Candidate:
    spec: VariantSpec
    decision: Decision


class JourneyStrategy:
    def __init__(self, spec: SlotSpec, build: BuildContext) -> None:
        self.stages = site_stages(build)
        if not self.stages.names:
            raise ConfigError([(("journey", "stages"), f"slot {spec.name} uses the journey strategy: "
                                                       "define the stages under journey: stages:")])
        if not spec.config.stages:
            raise ConfigError([(spec.here("stages"), "the journey strategy needs 'stages:' (stage name -> variant)")])
        problems = []
        self.by_stage: dict[str, tuple[_Candidate, ...]] = {}
        for stage, variants in spec.config.stages.items():
            if stage not in self.stages.names:
                problems.append((spec.here("stages", stage),
                                 f"unknown stage {stage!r} (stages: {', '.join(self.stages.names)})"))
                continue
            listed = variants if isinstance(variants, list) else [variants]
            try:
                compiled = compile_variants(build, spec.name, listed, "stages", stage)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            self.by_stage[stage] = tuple(
                _Candidate(v, Decision(v.variant, v.rule_id if v.rule_id != f"{spec.name}.{v.variant}"
                                       else f"{spec.name}.{stage}.{v.variant}", v.template, v.static,
                                       {"journey": {"stage": stage}}))
                for v in compiled)
        if problems:
            raise ConfigError(problems)

    def _candidates(self, visitor: Profile | None, ctx: RequestContext,
                    now: float) -> tuple[str | None, Sequence[_Candidate]]:
        stage = self.stages.stage_of(visitor, ctx, now)
        return stage, self.by_stage.get(stage, ()) if stage is not None else ()

    @staticmethod
    def _offerable(candidate: _Candidate, visitor: Profile | None) -> bool:
        spec = candidate.spec
        if spec.goal is not None and has_completed(visitor, spec.goal):
            return False
        return not (spec.content is not None and has_read(visitor, spec.content))

    def decide(self, slot: str, visitor: Profile | None, ctx: RequestContext, now: float) -> Decision | None:
        _, candidates = self._candidates(visitor, ctx, now)
        for candidate in candidates:
            if self._offerable(candidate, visitor):
                return candidate.decision
        return None

    def explain(self, slot: str, visitor: Profile | None, ctx: RequestContext,
                now: float) -> list[tuple[str, bool]]:
        stage, candidates = self._candidates(visitor, ctx, now)
        tried = [(f"stage={stage}", True)]
        for candidate in candidates:
            ok = self._offerable(candidate, visitor)
            tried.append((candidate.decision.rule_id, ok))
            if ok:
                break
        return tried

    def preview(self, variant: str | None, segment: str | None) -> Decision | None:
        """A variant by name, or (``--segment STAGE``) the first variant of that journey stage."""
        if variant is None:
            candidates = self.by_stage.get(segment or "", ())
            return candidates[0].decision if candidates else None
        for candidates in self.by_stage.values():
            for candidate in candidates:
                if candidate.spec.variant == variant:
                    return candidate.decision
        return None
