"""Compiling YAML conditions into plain Python closures.

A condition is a segment name, or a mapping whose keys are all required:
``all: [...]``, ``any: [...]``, ``not: ...``, ``segment: name``, or a field
with either a scalar (equality) or ``{operator: operand}``. Compiled once at
start-up; evaluating one is a few attribute reads and comparisons.

Profile fields need a profile, which exists only with personalization
consent. Without one, a profile field is *unknown*, and conditions combine in
three-valued (Kleene) logic: ``any: [{utm_medium: cpc}, {visits: {gte: 3}}]``
still fires for a cpc visitor, while ``not: {visits: {gt: 3}}`` stays unknown
and so never fires for a visitor we know nothing about. Unknown at the top is
false. With a profile, the plain two-valued ``test`` runs.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, cast

import regex

from ..core.context import RequestContext
from ..core.visitor import Profile
from ..errors import ConditionError, KeyPath
from ..throttle import Throttle
from . import schedule

if TYPE_CHECKING:
    from ..enrich.enrichment import Enrichment

log = logging.getLogger("personalize_mw")

Test = Callable[[RequestContext, "Profile | None", float], bool]
# A test of a profile field: Condition.__call__ asks its partial instead when there is no profile.
ProfileTest = Callable[[RequestContext, Profile, float], bool]
# Evaluation without a profile: True, False, or None for unknown.
Partial = Callable[[RequestContext, float], "bool | None"]

REQUEST_FIELDS = ("path", "path_prefix", "referrer_host", "device", "language", "country",
                  "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
PROFILE_FIELDS = ("visits", "viewed", "goal_completed", "days_since_first_visit", "channel")
OPERATORS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "prefix", "contains", "matches")


@dataclass(frozen=True, slots=True)
class Condition:
    test: Test
    uses_profile: bool
    partial: Partial | None = None  # set when uses_profile
    # The request fields it reads without a profile (profile fields are then unknown), or None when
    # it also reads the clock or an enricher: without a profile it is a pure function of those fields.
    reads: frozenset[str] | None = frozenset()
    # Its profile fields' own tests: with a profile it is a pure function of ``reads`` and of what
    # these answer (None when ``reads`` is; a segment used twice gives the same test objects).
    profile_tests: tuple[Test, ...] | None = ()

    def __call__(self, ctx: RequestContext, profile: Profile | None, now: float) -> bool:
        if profile is None and self.uses_profile:
            return self.without_profile(ctx, now) is True
        return self.test(ctx, profile, now)

    def without_profile(self, ctx: RequestContext, now: float) -> bool | None:
        if not self.uses_profile:
            return self.test(ctx, None, now)
        return self.partial(ctx, now) if self.partial is not None else None


def _request_getter(field: str) -> Callable[[RequestContext], Any]:
    if field in ("path", "path_prefix"):
        return lambda ctx: ctx.path
    if field.startswith("utm_"):
        key = field[4:]
        return lambda ctx: ctx.utm[key]
    if field.startswith("query."):
        name = field[6:]
        return lambda ctx: ctx.query.get(name)
    return lambda ctx: getattr(ctx, field)


def _compare(op: str, operand: Any, path: KeyPath, regex_timeout: float) -> Callable[[Any], bool]:
    if op == "eq":
        return lambda v: v == operand
    if op == "ne":
        return lambda v: v != operand
    if op in ("in", "not_in"):
        if not isinstance(operand, list):
            raise ConditionError(f"'{op}' takes a list", path)
        try:
            members = frozenset(operand)
        except TypeError:  # a mapping or a list among the members
            raise ConditionError(f"'{op}' takes a list of plain values (text, numbers)", path) from None
        return (lambda v: v in members) if op == "in" else (lambda v: v not in members)
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(operand, bool) or not isinstance(operand, (int, float)):
            raise ConditionError(f"'{op}' takes a number", path)
        if op == "gt":
            return lambda v: isinstance(v, (int, float)) and v > operand
        if op == "gte":
            return lambda v: isinstance(v, (int, float)) and v >= operand
        if op == "lt":
            return lambda v: isinstance(v, (int, float)) and v < operand
        return lambda v: isinstance(v, (int, float)) and v <= operand
    if op in ("prefix", "contains"):
        if not isinstance(operand, str):
            raise ConditionError(f"'{op}' takes a string", path)
        if op == "prefix":
            return lambda v: isinstance(v, str) and v.startswith(operand)
        return lambda v: isinstance(v, str) and operand in v
    if op == "matches":
        return _matcher(operand, path, regex_timeout)
    raise ConditionError(f"unknown operator {op!r} (one of: {', '.join(OPERATORS)})", path)


regex_timeouts = 0  # searches cut short so far, in every thread: a decision seeing one is not memoized
_timeouts_lock = threading.Lock()  # taken only on a timeout: += is not atomic across threads, and a lost
# count would let a decision that saw a timed-out false be memoized


def _matcher(pattern: Any, path: KeyPath, timeout: float) -> Callable[[Any], bool]:
    """A regex search whose run time is bounded: a ReDoS pattern cannot stall a request."""
    if not isinstance(pattern, str):
        raise ConditionError("'matches' takes a regular expression string", path)
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        raise ConditionError(f"invalid regular expression: {exc}", path) from None
    where = ".".join(map(str, path))
    throttle = Throttle()  # a visitor can make it time out on every request

    def match(value: Any) -> bool:
        if not isinstance(value, str):
            return False
        try:
            # concurrent=False keeps the GIL: giving it up and waiting to get it
            # back under load took as long as the timeout and failed searches.
            return compiled.search(value[:1024], timeout=timeout, concurrent=False) is not None
        except TimeoutError:
            global regex_timeouts
            with _timeouts_lock:
                regex_timeouts += 1  # a false that is not the pattern's answer: not to be remembered
            held = throttle.ready()
            if held is not None:
                log.warning("personalize_mw: regex at %s timed out; condition is false "
                            "(%d more times since the last warning)", where, held)
            return False
    return match


def _uses_profile(test: ProfileTest) -> tuple[Test, bool]:
    """A profile test as a Condition's test; uses_profile=True keeps a missing profile away from it."""
    return cast(Test, test), True


def _field_test(field: str, spec: Any, path: KeyPath, regex_timeout: float,
                zone: tzinfo = UTC, enriched: Enrichment | None = None) -> tuple[Test, bool]:
    if field == "viewed":
        return _uses_profile(_viewed_test(spec, path))
    if field == "goal_completed":
        return _uses_profile(_goal_test(spec, path, regex_timeout))
    if field in ("visits", "days_since_first_visit", "channel"):
        get_value: Callable[[RequestContext, Profile, float], Any]
        if field == "visits":
            get_value = lambda ctx, profile, now: profile.visits  # noqa: E731
        elif field == "channel":  # the session's channel, as its records carry it (set where it starts)
            get_value = lambda ctx, profile, now: profile.session_channel  # noqa: E731
        else:
            get_value = lambda ctx, profile, now: profile.days_since_first_visit(now)  # noqa: E731
        check = _value_check(spec, path, regex_timeout, default_op="eq")
        return _uses_profile(lambda ctx, profile, now: check(get_value(ctx, profile, now)))
    if field in schedule.TIME_FIELDS:  # the clock's, not the request's: no consent needed
        if field == "hour":
            hour, check = schedule.local_hour(zone), _value_check(spec, path, regex_timeout, default_op="eq")
            return (lambda ctx, profile, now: check(hour(now))), False
        if field == "weekday":
            return schedule.weekday_test(spec, path, zone), False
        return schedule.moment_test(field, spec, path, zone), False
    if field in REQUEST_FIELDS or (field.startswith("query.") and len(field) > 6):
        getter = _request_getter(field)
        check = _value_check(spec, path, regex_timeout,
                             default_op="prefix" if field == "path_prefix" else "eq")
        return (lambda ctx, profile, now: check(getter(ctx))), False
    found = enriched.getter(field) if enriched is not None else None
    if found is not None:  # company.industry: an enricher's field; a person's data is a profile field
        get, personal = found
        check = _value_check(spec, path, regex_timeout, default_op="eq")
        return (lambda ctx, profile, now: check(get(ctx, profile))), personal
    known: tuple[str, ...] = REQUEST_FIELDS + PROFILE_FIELDS + schedule.TIME_FIELDS + ("all", "any", "not", "segment")
    if enriched is not None:
        known += tuple(f"{name}.<field>" for name in enriched.enrichers)
    close = difflib.get_close_matches(field, known, n=1)
    hint = f": did you mean {close[0]!r}?" if close else ""
    raise ConditionError(f"unknown field {field!r}{hint} (one of: {', '.join(known)}, query.<name>)", path)


def _value_check(spec: Any, path: KeyPath, regex_timeout: float, default_op: str) -> Callable[[Any], bool]:
    if not isinstance(spec, dict):
        if isinstance(spec, list):
            raise ConditionError("a list needs an operator: {in: [...]}", path)
        return _compare(default_op, spec, path, regex_timeout)
    if not spec:
        raise ConditionError("an empty operator mapping", path)
    checks = [_compare(op, operand, path + (op,), regex_timeout) for op, operand in spec.items()]
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _viewed_test(spec: Any, path: KeyPath) -> ProfileTest:
    """``viewed: /pricing``, ``{prefix: /blog/}``, ``{path: /pricing, times: 2}``."""
    times = 1
    if isinstance(spec, str):
        target, is_prefix = spec, False
    elif isinstance(spec, dict):
        unknown = set(spec) - {"path", "prefix", "times"}
        if unknown or ("path" in spec) == ("prefix" in spec):
            raise ConditionError("'viewed' takes a path, or {path|prefix: ..., times: N}", path)
        is_prefix = "prefix" in spec
        target = spec["prefix"] if is_prefix else spec["path"]
        times = spec.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise ConditionError("'times' must be a whole number of at least 1", path + ("times",))
    else:
        raise ConditionError("'viewed' takes a path, or {path|prefix: ..., times: N}", path)
    if not isinstance(target, str):
        raise ConditionError("'viewed' needs a path string", path)
    if is_prefix:
        return lambda ctx, profile, now: sum(1 for p in profile.paths if p.startswith(target)) >= times
    return lambda ctx, profile, now: profile.paths.count(target) >= times


def _goal_test(spec: Any, path: KeyPath, regex_timeout: float) -> ProfileTest:
    """``goal_completed: signup`` or an operator over the set of completed goals."""
    if isinstance(spec, str):
        return lambda ctx, profile, now: spec in profile.goals
    if isinstance(spec, dict) and len(spec) == 1:
        op, operand = next(iter(spec.items()))
        names = operand if isinstance(operand, list) else [operand]
        if not all(isinstance(n, str) for n in names):
            raise ConditionError("goal names are strings", path + (op,))
        wanted = frozenset(names)
        if op in ("eq", "in"):
            return lambda ctx, profile, now: not wanted.isdisjoint(profile.goals)
        if op in ("ne", "not_in"):
            return lambda ctx, profile, now: wanted.isdisjoint(profile.goals)
    raise ConditionError("'goal_completed' takes a goal name or {in|not_in: [names]}", path)


def compile_condition(
    spec: Any,
    segments: Mapping[str, Condition],
    path: KeyPath = (),
    regex_timeout: float = 0.005,
    zone: tzinfo = UTC,
    enriched: Enrichment | None = None,
) -> Condition:
    """Compile one condition; segment names must already be compiled in ``segments``.

    ``zone`` is the config's ``timezone``, where the time conditions read the clock;
    ``enriched``: the config's enrichers, whose fields read as ``NAME.field``.
    """
    if isinstance(spec, str):
        return _segment(spec, segments, path)
    if not isinstance(spec, dict) or not spec:
        raise ConditionError("a condition is a segment name or a non-empty mapping", path)
    parts: list[Condition] = []
    for key, value in spec.items():
        here = path + (key,)
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                raise ConditionError(f"'{key}' takes a non-empty list of conditions", here)
            subs = [compile_condition(v, segments, here + (i,), regex_timeout, zone, enriched)
                    for i, v in enumerate(value)]
            parts.append(_combine(subs, all if key == "all" else any))
        elif key == "not":
            parts.append(_negate(compile_condition(value, segments, here, regex_timeout, zone, enriched)))
        elif key == "segment":
            parts.append(_segment(value, segments, here))
        else:
            test, uses_profile = _field_test(str(key), value, here, regex_timeout, zone, enriched)
            reads = _reads_of(str(key))
            tests = None if reads is None else (test,) if uses_profile else ()
            parts.append(Condition(test, uses_profile, reads=reads, profile_tests=tests))
    return parts[0] if len(parts) == 1 else _combine(parts, all)


def _reads_of(field: str) -> frozenset[str] | None:
    """What a field's leaf reads without a profile: a request field, nothing (a profile field), or None."""
    if field in REQUEST_FIELDS or field.startswith("query."):
        return frozenset((field,))
    return frozenset() if field in PROFILE_FIELDS else None  # the clock's fields, an enricher's


def _union(subs: list[Condition]) -> frozenset[str] | None:
    reads: frozenset[str] = frozenset()
    for sub in subs:
        if sub.reads is None:
            return None
        reads |= sub.reads
    return reads


def merged_tests(groups: Iterable[tuple[Test, ...] | None]) -> tuple[Test, ...] | None:
    """The profile tests of all of ``groups``, each once, in order; None if one group is not known.

    Conditions merge their parts' tests with it, strategies their rules', slots their
    strategies' and a page its slots': a segment used twice gives the same test objects.
    """
    found: list[Test] = []
    for tests in groups:
        if tests is None:
            return None
        found.extend(test for test in tests if test not in found)  # by identity: tests are closures
    return tuple(found)


def request_key(fields: frozenset[str]) -> Callable[[RequestContext], Hashable]:
    """The values of ``fields`` in one request, as a key: equal keys, equal answers (see Condition.reads).

    The attributes in one attrgetter call and the UTM values in one itemgetter call (C, not a
    lambda per field): a slot's key is made on every page of a visitor without a profile.
    """
    attrs = sorted({"path" if f == "path_prefix" else f for f in fields if not f.startswith(("utm_", "query."))})
    utm = sorted(f[4:] for f in fields if f.startswith("utm_"))
    query = sorted(f[6:] for f in fields if f.startswith("query."))
    parts: list[Callable[[RequestContext], Hashable]] = []
    if attrs:
        parts.append(attrgetter(*attrs))
    if utm:
        from_utm = itemgetter(*utm)
        parts.append(lambda ctx: from_utm(ctx.utm))
    if query:
        parts.append(lambda ctx: tuple([ctx.query.get(name) for name in query]))
    if not parts:
        return lambda ctx: ()
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        first, second = parts
        return lambda ctx: (first(ctx), second(ctx))
    a, b, c = parts
    return lambda ctx: (a(ctx), b(ctx), c(ctx))


def _segment(name: Any, segments: Mapping[str, Condition], path: KeyPath) -> Condition:
    if not isinstance(name, str) or name not in segments:
        known = ", ".join(sorted(segments)) or "none defined"
        raise ConditionError(f"unknown segment {name!r} (known: {known})", path)
    return segments[name]


def _negate(inner: Condition) -> Condition:
    inner_test = inner.test

    def test(ctx: RequestContext, profile: Profile | None, now: float) -> bool:
        return not inner_test(ctx, profile, now)

    def partial(ctx: RequestContext, now: float) -> bool | None:
        value = inner.without_profile(ctx, now)
        return None if value is None else not value

    return Condition(test, inner.uses_profile, partial if inner.uses_profile else None, inner.reads,
                     inner.profile_tests)


def _combine(subs: list[Condition], how: Callable[[Any], bool]) -> Condition:
    tests = tuple(sub.test for sub in subs)
    uses_profile = any(sub.uses_profile for sub in subs)
    # Kleene logic without a profile: a deciding value wins over unknown.
    decisive = how is any  # any: one True decides; all: one False decides

    def partial(ctx: RequestContext, now: float) -> bool | None:
        unknown = False
        for sub in subs:
            value = sub.without_profile(ctx, now)
            if value is None:
                unknown = True
            elif value is decisive:
                return decisive
        return None if unknown else not decisive

    if how is all:
        def test(ctx: RequestContext, profile: Profile | None, now: float) -> bool:
            for t in tests:
                if not t(ctx, profile, now):
                    return False
            return True
    else:
        def test(ctx: RequestContext, profile: Profile | None, now: float) -> bool:
            for t in tests:
                if t(ctx, profile, now):
                    return True
            return False
    return Condition(test, uses_profile, partial if uses_profile else None, _union(subs),
                     merged_tests(sub.profile_tests for sub in subs))


# Stands in for a segment that failed to compile: what refers to it compiles without a
# second report of the same mistake (the config is refused anyway, so it never decides).
_BROKEN = Condition(lambda ctx, profile, now: False, False)


def compile_segments(specs: Mapping[str, Any], regex_timeout: float,
                     problems: list[tuple[tuple[Any, ...], str]] | None = None,
                     zone: tzinfo = UTC, enriched: Enrichment | None = None) -> dict[str, Condition]:
    """Segments may use segments defined before them; cycles are impossible that way.

    Raises ConditionError for the first bad segment, or, given ``problems``, appends
    every one there and goes on.
    """
    compiled: dict[str, Condition] = {}
    for name, spec in specs.items():
        try:
            compiled[name] = compile_condition(spec, compiled, ("segments", name), regex_timeout, zone, enriched)
        except ConditionError as exc:
            if problems is None:
                raise
            problems.append((exc.path, str(exc)))
            compiled[name] = _BROKEN
    return compiled

