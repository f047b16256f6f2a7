"""The rule-set plug-in interface: what a strategy is given and what it answers.

A slot names one strategy or a list of them (``strategy: [journey, rules]``);
the first one that returns a :class:`Decision` wins, ``None`` passes to the
next, and when none decides the page keeps its default content.

A strategy is any class (or callable) built once per slot at start-up as
``Factory(spec: SlotSpec, build: BuildContext)`` and returning an object with
``decide(slot, visitor, ctx, now) -> Decision | None``. It is called on the
request path for every page showing the slot, so it must not do I/O that can
block unboundedly and should cost microseconds; an exception it raises is
logged and treated as "no decision" (the default is served).

The built-in strategies (``rules``, ``journey``, ``split``, ``crowd``,
``bandit``) register through the same registry as third parties
(:mod:`personalize_mw.rules.registry`): an entry point in the group
``personalize_mw.rulesets`` or ``strategy: python:package.module:Class``.

Example plug-in::

    class Weekend:
        def __init__(self, spec: SlotSpec, build: BuildContext) -> None:
            opts = spec.options  # the slot's `weekend:` block (or `options:` for python: names)
            self.template, self.static = build.compile_template(opts["template"], None, spec.here("weekend"))

        def decide(self, slot, visitor, ctx, now):
            if time.gmtime(now).tm_wday < 5:
                return None
            return Decision("weekend", "weekend.sat-sun", self.template, self.static)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from jinja2 import Template

if TYPE_CHECKING:
    from ..config import Config, Slot
    from ..core.context import RequestContext
    from ..core.visitor import Profile
    from ..render import VariantRenderer
    from .conditions import Condition

# The arms an exposure record can carry (docs/touchpoints.md).
TREATMENT, HOLDOUT, UNENROLLED = "treatment", "holdout", "unenrolled"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a slot shows for this request, and what its exposure record says.

    Rendering: ``static`` (the bytes, when the variant has no Jinja syntax) is
    used as is; else ``template`` is rendered with the usual variables
    (visitor, request, slot) plus ``variables`` (e.g. ``items`` for a list of
    recommendations). ``default=True`` keeps the page's default content but
    still records the exposure (the holdout arm).
    """

    variant: str | None  # None only for an unenrolled visitor shown the default
    rule_id: str
    template: Template | None = None
    static: bytes | None = None
    variables: Mapping[str, Any] | None = None
    experiment: str | None = None
    arm: str = TREATMENT
    default: bool = False
    holdout_share: float | None = None  # treatment and holdout arms: the share they were assigned with


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One compiled entry of a slot's ``variants:`` list (split, bandit) or journey stage."""

    variant: str
    rule_id: str
    weight: float
    template: Template
    static: bytes | None
    goal: str | None = None  # a call to action for this goal: never shown once it is completed
    content: str | None = None  # the path this variant recommends: never shown once read

    def decision(self) -> Decision:
        return Decision(self.variant, self.rule_id, self.template, self.static)


@dataclass(frozen=True)
class SlotSpec:
    """A slot as a strategy's factory sees it at start-up."""

    name: str
    config: Slot  # the validated YAML of the slot
    variants: tuple[VariantSpec, ...]  # its compiled ``variants:`` (empty when none)
    options: Mapping[str, Any]  # the slot's block named like the strategy, e.g. `crowd: {...}`
    experiment: str | None  # the experiment id (also the hash salt), None when not an experiment

    def here(self, *keys: str | int) -> tuple[str | int, ...]:
        """A key path for ConfigError, so a mistake is reported with its YAML line."""
        return ("slots", self.name) + keys


@dataclass
class BuildContext:
    """What a strategy factory may use to compile itself; one per config."""

    config: Config
    segments: Mapping[str, Condition]
    renderer: VariantRenderer
    compile_condition: Callable[[Any, tuple[str | int, ...]], Condition]
    # (inline template or None, template_file or None, key path) -> (template, static bytes or None)
    compile_template: Callable[[str | None, str | None, tuple[str | int, ...]], tuple[Template, bytes | None]]
    # Objects shared by the slots of one config (the journey stages, the state store, ...),
    # created on first use by whichever strategy needs them: shared.setdefault(key, value).
    shared: dict[str, Any] = field(default_factory=dict)
    # True when compiled only to be checked and thrown away (load_config, personalize-mw check):
    # open no store, connect to nothing, start no thread; validation has no side effects.
    check_only: bool = False


@runtime_checkable
class RuleSet(Protocol):
    def decide(self, slot: str, visitor: Profile | None, ctx: RequestContext,
               now: float) -> Decision | None:
        """The decision for this request, or None to let the next strategy (or the default) show."""


@runtime_checkable
class Explaining(Protocol):
    """Optional: for the X-Personalize-Debug header (never on the normal request path)."""

    def explain(self, slot: str, visitor: Profile | None, ctx: RequestContext,
                now: float) -> Sequence[tuple[str, bool]]:
        """The rule ids tried, in order, each with whether it matched."""


@runtime_checkable
class Previewable(Protocol):
    """Optional: what a preview link (``personalize-mw preview-link``) forces for this slot.

    Without it, a variant preview still finds the slot's ``variants:``.
    """

    def preview(self, variant: str | None, segment: str | None) -> Decision | None:
        """The decision showing ``variant``, or the one a visitor of ``segment`` would get; else None."""


RuleSetFactory = Callable[[SlotSpec, BuildContext], RuleSet]
