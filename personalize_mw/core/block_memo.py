"""Rendered blocks remembered, by the values their templates read.

A variant template is a pure function of the variable paths it reads
(:func:`personalize_mw.render.template_inputs`): request fields, the slot's
name, variant and default content, and the visitor's fields of
:data:`VISITOR_FIELDS` (known, visits, returning, days since the first visit,
goals: constants without a profile, a few values of it with one). The same
values give the same bytes, so a block is rendered once per distinct values
and afterwards looked up by them, without building the template's variables.
Never remembered: a template reading the merge fields (``visitor.traits``),
the whole visitor mapping or a path a request cannot key; a decision carrying
its own variables; a render that failed. The caller leaves the memo out in
debug and preview, where enrichers are configured (rendering asks each of
them, and a pageview records what was asked), and for slots whose decisions
the slot does not remember itself (see ``SlotDecider.remembers``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from ..render import freeze, walk

if TYPE_CHECKING:
    from jinja2 import Template

    from ..render import VariantRenderer
    from .context import RequestContext
    from .visitor import Profile

# What Personalizer._variables gives a template (tests/test_block_memo.py checks both):
REQUEST_FIELDS = frozenset({"path", "query", "utm", "device", "language", "country"})  # ctx's attributes
VisitorField = Callable[["Profile | None", float], Any]
# visitor.<name>: made from the profile (None: no profile) and the time, here for _variables and the keys alike.
VISITOR_FIELDS: dict[str, VisitorField] = {
    "known": lambda profile, now: profile is not None,
    "visits": lambda profile, now: profile.visits if profile else 0,
    "returning": lambda profile, now: bool(profile and profile.visits > 1),
    "days_since_first_visit": lambda profile, now: int(profile.days_since_first_visit(now)) if profile else 0,
    "goals": lambda profile, now: list(profile.goals) if profile else [],
}
_SCALAR = frozenset({"path", "device", "language", "country"})  # str or None: no path goes deeper

_MAX_ENTRIES = 1024  # remembered blocks, cleared when full (as the decision memo)
_MAX_BYTES = 4096  # longest output, and longest default content in a key, kept: ~8 MB at most
_MAX_PLANS = 1024  # templates are compiled at start-up; a plug-in compiling per request is not planned

Key = Callable[["RequestContext"], Hashable]
VisitorKey = Callable[["Profile | None", float], Hashable]


def _no_visitor_field(profile: Profile | None, now: float) -> None:
    return None


class Plan(NamedTuple):
    """What a template needs from a block: its default content? and the keys of its request and visitor fields."""

    reads_default: bool
    key: Key | None  # None: never remembered
    visitor_key: VisitorKey = _no_visitor_field


_UNKNOWN = Plan(True, None)  # a template compiled elsewhere: reads anything


def plan_of(paths: tuple[tuple[Any, ...], ...] | None) -> Plan:
    """The plan of a template reading ``paths`` (None: not known)."""
    if paths is None:
        return _UNKNOWN
    reads_default = any(p[0] == "slot" and (len(p) == 1 or p[1] not in ("name", "variant")) for p in paths)
    getters: list[Key] = []
    scalars: list[str] = []
    visitor: set[str] = set()
    for path in paths:
        head = path[0]
        if head == "slot":  # its name and variant are in every key, the default content when read
            continue
        if head == "visitor":
            if len(path) > 1 and path[1] in VISITOR_FIELDS:
                visitor.add(path[1])
                continue
            return Plan(reads_default, None)  # the merge fields, or the whole mapping with them
        if head == "request":
            if len(path) == 1 or path[1] not in REQUEST_FIELDS:
                return Plan(reads_default, None)
            if path[1] in _SCALAR:
                scalars.append(path[1])
            else:
                getters.append(_mapping_value(path[1], path[2:]))
            continue
        # Any other name is a local ({% set %}, a loop: derived from recorded paths) or a global (constant):
        # without enrichers, _variables gives nothing else.
    if scalars:
        getters.append(attrgetter(*sorted(set(scalars))))  # one C call for all of them
    return Plan(reads_default, _combined(getters), _visitor_key(sorted(visitor)))


# The one field whose value is not hashable as it is: its key is the same goals as a tuple.
_GOALS_KEY: VisitorField = lambda profile, now: tuple(profile.goals) if profile else ()  # noqa: E731


def _visitor_key(names: list[str]) -> VisitorKey:
    if not names:
        return _no_visitor_field
    fields = [_GOALS_KEY if name == "goals" else VISITOR_FIELDS[name] for name in names]
    return lambda profile, now: tuple([field(profile, now) for field in fields])


def _mapping_value(field: str, rest: tuple[Any, ...]) -> Key:
    """ctx.utm or ctx.query down ``rest``, as render._resolve reads the template's copy of it."""
    get = attrgetter(field)
    if not rest:
        return lambda ctx: freeze(get(ctx))
    first, deeper = rest[0], rest[1:]
    if not deeper:  # the usual request.utm.source: a value (str or None), or the mapping for a method
        def one(ctx: RequestContext) -> Hashable:
            mapping = get(ctx)
            return mapping[first] if first in mapping else freeze(mapping)
        return one
    return lambda ctx: freeze(walk(get(ctx), rest))


def _combined(getters: list[Key]) -> Key:
    if not getters:
        return lambda ctx: None
    if len(getters) == 1:
        return getters[0]
    if len(getters) == 2:
        a, b = getters
        return lambda ctx: (a(ctx), b(ctx))
    return lambda ctx: tuple([get(ctx) for get in getters])


class BlockMemo:
    """Rendered bytes by (template, slot, variant, charset, request values, default content)."""

    def __init__(self, renderer: VariantRenderer) -> None:
        self._renderer = renderer
        self._plans: dict[Template, Plan] = {}
        self.blocks: dict[Hashable, bytes] = {}  # read with .get on the request path

    def plan(self, template: Template | None) -> Plan:
        if template is None:
            return _UNKNOWN
        plan = self._plans.get(template)
        if plan is None:
            plan = plan_of(self._renderer.inputs(template))
            if len(self._plans) < _MAX_PLANS:
                self._plans[template] = plan
        return plan

    def remember(self, key: Hashable, html: bytes) -> None:
        if len(html) > _MAX_BYTES:
            return
        blocks = self.blocks
        if len(blocks) >= _MAX_ENTRIES:
            blocks.clear()
        blocks[key] = html


def default_fits(content_start: int, content_end: int) -> bool:
    """Whether a block's default content is short enough to be part of a key."""
    return content_end - content_start <= _MAX_BYTES
