"""Slots compiled from the config, and the first-match-wins decision per slot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jinja2 import Template, TemplateSyntaxError

from ..enrich.enrichment import Enrichment, build_enrichment
from ..errors import ConditionError, ConfigError
from ..render import RenderError, VariantRenderer
from .conditions import Condition, compile_condition, compile_segments, merged_tests
from .protocol import BuildContext, Decision, SlotSpec
from .slot import SlotDecider, build_slot

if TYPE_CHECKING:
    from ..config import Config
    from ..core.context import RequestContext
    from ..core.visitor import Profile


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule_id: str
    variant: str
    condition: Condition
    template: Template
    static: bytes | None  # the output, when the template has no Jinja syntax
    decision: Decision  # built once: deciding allocates nothing
    segment: str | None  # the segment name when ``if:`` is just one (preview by segment)


class RulesStrategy:
    """``strategy: rules``: the slot's ``rules:``, first match wins (the reference for speed)."""

    def __init__(self, spec: SlotSpec, build: BuildContext) -> None:
        rules = []
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for index, rule in enumerate(spec.config.rules):
            here = spec.here("rules", index)
            try:
                condition = build.compile_condition(rule.if_, here + ("if",))
                template, static = build.compile_template(rule.template, rule.template_file, here)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            rule_id = rule.id or f"{spec.name}.{index}"
            segment = rule.if_ if isinstance(rule.if_, str) else None
            rules.append(CompiledRule(rule_id, rule.variant, condition, template, static,
                                      Decision(rule.variant, rule_id, template, static), segment))
        if problems:
            raise ConfigError(problems)
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        reads: frozenset[str] | None = frozenset()
        for compiled in self.rules:
            found = compiled.condition.reads
            reads = None if reads is None or found is None else reads | found
        # Without a profile the first match is a pure function of these request fields (see SlotDecider);
        # with one, of them and of what these profile tests answer.
        pure = type(self) is RulesStrategy  # a subclass may decide otherwise
        self.reads_without_profile = reads if pure else None
        self.profile_tests = (merged_tests(r.condition.profile_tests for r in self.rules)
                              if pure and reads is not None else None)

    def decide(self, slot: str, visitor: Profile | None, ctx: RequestContext, now: float) -> Decision | None:
        for rule in self.rules:
            if rule.condition(ctx, visitor, now):
                return rule.decision
        return None

    def explain(self, slot: str, visitor: Profile | None, ctx: RequestContext,
                now: float) -> list[tuple[str, bool]]:
        tried = []
        for rule in self.rules:
            matched = rule.condition(ctx, visitor, now)
            tried.append((rule.rule_id, matched))
            if matched:
                break
        return tried

    def preview(self, variant: str | None, segment: str | None) -> Decision | None:
        """The first rule showing ``variant``, or the first whose ``if:`` is the segment ``segment``."""
        for rule in self.rules:
            if (rule.variant == variant) if variant is not None else (rule.segment == segment):
                return rule.decision
        return None


@dataclass(frozen=True, slots=True)
class CompiledConfig:
    segments: dict[str, Condition]
    slots: dict[str, SlotDecider]
    renderer: VariantRenderer
    build: BuildContext
    enrichment: Enrichment | None = None  # None: no `enrichment:` in the config


def compiled_slots(config: Config, *, check_only: bool = False) -> CompiledConfig:
    """Compile the slots of a config; raises ConfigError naming every bad key.

    Called where the middleware starts (one compilation per Personalizer, which
    opens the state store of crowd and bandit slots). ``check_only`` compiles to
    find mistakes and throw the result away (load_config, ``personalize-mw check``):
    no state store is opened, no file created.
    """
    problems: list[tuple[tuple[str | int, ...], str]] = []
    timeout = config.regex_timeout_ms / 1000.0
    renderer = VariantRenderer(config.render.max_output_bytes, config.render.timeout_ms,
                               config.render.allowed_url_schemes)
    enrichment = build_enrichment(config, check_only, problems)
    # Every bad segment is reported; what refers to one is not reported again.
    zone = config.zone
    segments = compile_segments(config.segments, timeout, problems, zone, enrichment)

    def condition(spec: object, here: tuple[str | int, ...]) -> Condition:
        try:
            return compile_condition(spec, segments, here, timeout, zone, enrichment)
        except ConditionError as exc:
            raise ConfigError([(exc.path, str(exc))]) from None

    def template(inline: str | None, file: str | None, here: tuple[str | int, ...]) -> tuple[Template, bytes | None]:
        return _compile_template(config, renderer, inline, file, here)

    build = BuildContext(config, segments, renderer, condition, template, check_only=check_only)
    slots: dict[str, SlotDecider] = {}
    for slot_name, slot in config.slots.items():
        try:
            slots[slot_name] = build_slot(slot_name, slot, build)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        if enrichment is not None:
            enrichment.close()
        raise ConfigError(problems)
    if check_only and enrichment is not None:
        enrichment.close()  # thrown away with the rest: no file stays open
    return CompiledConfig(segments, slots, renderer, build, enrichment)


def _compile_template(
    config: Config, renderer: VariantRenderer, inline: str | None, file: str | None,
    here: tuple[str | int, ...],
) -> tuple[Template, bytes | None]:
    key = "template" if inline is not None else "template_file"
    source = inline
    if file is not None:
        path = config.resolve(file)
        base = Path(config.base_dir).resolve()
        if not path.resolve().is_relative_to(base):  # resolve(): a symlink out counts as out
            raise ConfigError([(here + (key,), f"{file!r} is outside the config's folder {base}: "
                                "template files live beside personalize.yaml or below it")]) from None
        try:
            source = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([(here + (key,), f"cannot read {path}: {exc.strerror or exc}")]) from None
    try:
        return renderer.compile(source or ""), renderer.static_output(source or "")
    except TemplateSyntaxError as exc:
        raise ConfigError([(here + (key,), f"template error on its line {exc.lineno}: {exc.message}")]) from None
    except RenderError as exc:
        raise ConfigError([(here + (key,), str(exc))]) from None
