"""Slots compiled from the config, and the first-match-wins decision per slot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jinja2 import Template, TemplateSyntaxError

from ..errors import ConditionError, ConfigError
from ..render import RenderError, VariantRenderer
from .conditions import Condition, compile_condition, compile_segments

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


@dataclass(frozen=True, slots=True)
class CompiledSlot:
    name: str
    rules: tuple[CompiledRule, ...]

    def decide(self, ctx: "RequestContext", profile: "Profile | None", now: float) -> CompiledRule | None:
        """The first rule whose condition holds: its variant, template and id are the decision."""
        for rule in self.rules:
            if rule.condition(ctx, profile, now):
                return rule
        return None


@dataclass(frozen=True, slots=True)
class CompiledConfig:
    segments: dict[str, Condition]
    slots: dict[str, CompiledSlot]
    renderer: VariantRenderer


def compiled_slots(config: "Config") -> CompiledConfig:
    """Compile once per config object; raises ConfigError naming every bad key."""
    if config._compiled is not None:
        return config._compiled
    problems: list[tuple[tuple[str | int, ...], str]] = []
    timeout = config.regex_timeout_ms / 1000.0
    renderer = VariantRenderer(config.render.max_output_bytes, config.render.timeout_ms,
                               config.render.allowed_url_schemes)
    try:
        segments = compile_segments(config.segments, timeout)
    except ConditionError as exc:
        problems.append((exc.path, str(exc)))
        segments = {}
    slots: dict[str, CompiledSlot] = {}
    for slot_name, slot in config.slots.items():
        rules = []
        for index, rule in enumerate(slot.rules):
            here: tuple[str | int, ...] = ("slots", slot_name, "rules", index)
            try:
                condition = compile_condition(rule.if_, segments, here + ("if",), timeout)
                template, static = _compile_template(config, renderer, rule.template, rule.template_file, here)
            except ConditionError as exc:
                problems.append((exc.path, str(exc)))
                continue
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            rules.append(CompiledRule(rule.id or f"{slot_name}.{index}", rule.variant, condition, template, static))
        slots[slot_name] = CompiledSlot(slot_name, tuple(rules))
    if problems:
        raise ConfigError(problems)
    compiled = CompiledConfig(segments, slots, renderer)
    config._compiled = compiled
    return compiled


def _compile_template(
    config: "Config", renderer: VariantRenderer, inline: str | None, file: str | None,
    here: tuple[str | int, ...],
) -> tuple[Template, bytes | None]:
    key = "template" if inline is not None else "template_file"
    source = inline
    if file is not None:
        path = config.resolve(file)
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
