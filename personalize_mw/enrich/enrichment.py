"""The enrichers of one config, as conditions and templates read them.

Built once per config (``rules.engine.compiled_slots``). On the request path a
field ``company.industry`` costs one dictionary read once its enricher answered
for this request: each enricher is asked at most once per request (the answer
is kept on the request context), and only when a condition reads it or a variant
template is rendered.
Without ``enrichment:`` in the config there is no :class:`Enrichment` at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..config_problems import STAND_IN
from ..errors import ConfigError, Problem
from ..throttle import Throttle
from .protocol import Enricher, EnricherSpec, Fields
from .recorded import personal_name, recorded_props, unknown_fields
from .registry import UnknownEnricher, resolve

if TYPE_CHECKING:
    from ..config import Config
    from ..core.context import RequestContext
    from ..core.visitor import Profile

log = logging.getLogger("personalize_mw")

# (request, profile or None) -> the field's value, None when unknown
Getter = Callable[["RequestContext", "Profile | None"], Any]


class Enrichment:
    """``enrichment:`` compiled: name -> enricher."""

    def __init__(self, enrichers: Mapping[str, Enricher], record: Mapping[str, list[str]] | None = None) -> None:
        self.enrichers = dict(enrichers)
        # (enricher, field, props key) for each field `record:` names: empty, nothing is recorded
        self.recorded = tuple((name, field, f"{name}.{field}") for name, fields in (record or {}).items()
                              for field in fields)
        self._personal = {name for name, e in self.enrichers.items() if getattr(e, "personal", True)}
        self._identified = [e.identified for e in self.enrichers.values() if hasattr(e, "identified")]
        self._throttles = {name: Throttle() for name in self.enrichers}

    @classmethod
    def knowing_nothing(cls, names: Iterable[str]) -> Enrichment:
        """Enrichers by name only: conditions on their fields compile and read what ``ctx.enriched`` holds
        (suggest segments fills it with what the records say); nothing is looked up."""
        return cls(dict.fromkeys(names, _KNOWS_NOTHING))

    @property
    def wants_user(self) -> bool:
        """Does an enricher about a person need the (hashed) user id on later pages?"""
        return bool(self._personal)

    def getter(self, field: str) -> tuple[Getter, bool] | None:
        """``NAME.key`` -> (getter, personal), or None when NAME is not an enricher."""
        name, _, key = field.partition(".")
        if name not in self.enrichers or not key:
            return None
        answer = self.answer

        def get(ctx: RequestContext, profile: Profile | None) -> Any:
            found = answer(name, ctx, profile)
            return found.get(key) if found else None
        return get, name in self._personal

    def answer(self, name: str, ctx: RequestContext, profile: Profile | None) -> Fields | None:
        """What enricher ``name`` knows for this request; asked once per request."""
        memo = ctx.enriched
        if memo is None:
            memo = ctx.enriched = {}
        elif name in memo:
            return memo[name]
        found: Fields | None = None
        if profile is not None or name not in self._personal:  # a person's data: consent first
            try:
                found = self.enrichers[name].lookup(ctx, profile)
            except Exception:
                held = self._throttles[name].ready()
                if held is not None:
                    log.exception("personalize_mw: enricher %s failed; its fields are unknown "
                                  "(%d more times since the last report)", name, held)
        memo[name] = found
        return found

    def recorded_fields(self, ctx: RequestContext) -> dict[str, Any] | None:
        """The ``record:`` fields of the answers this request already asked for; nothing is asked here."""
        return recorded_props(self.recorded, ctx.enriched) or None if ctx.enriched else None

    def variables(self, ctx: RequestContext, profile: Profile | None) -> dict[str, dict[str, Any]]:
        """For variant templates: ``{{ company.name }}``; empty where nothing is known."""
        return {name: dict(self.answer(name, ctx, profile) or {}) for name in self.enrichers}

    def identified(self, user: str, account: str | None = None) -> None:
        """identify() was called with consent: remote enrichers start fetching now."""
        for call in self._identified:
            try:
                call(user, account)
            except Exception:
                log.exception("personalize_mw: an enricher failed to start a fetch after identify()")

    def close(self) -> None:
        for enricher in self.enrichers.values():
            close = getattr(enricher, "close", None)
            if close is not None:
                close()


# Template variables and condition fields an enricher's name must not hide.
RESERVED = frozenset({"visitor", "request", "slot", "items", "journey", "default", "traits", "query",
                      "utm", "all", "any", "not", "segment"})


def build_enrichment(config: Config, check_only: bool, problems: list[Problem]) -> Enrichment | None:
    """The configured enrichers (None when there are none); a bad entry is a problem at its key."""
    if not config.enrichment:
        return None
    enrichers: dict[str, Enricher] = {}
    record = {name: entry.record for name, entry in config.enrichment.items() if entry.record}
    for name, entry in config.enrichment.items():
        # A broken entry still has its name: conditions reading its fields are not reported twice.
        enrichers[name] = _KNOWS_NOTHING
        if entry.type == STAND_IN:
            continue
        spec = EnricherSpec(name, dict(entry.model_extra or {}), config.resolve, check_only)
        try:
            enricher = resolve(entry.type)(spec)
        except UnknownEnricher as exc:
            problems.append((spec.here("type"), str(exc)))
            continue
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        except Exception as exc:  # a plug-in's own failure is a config problem, not a traceback
            problems.append((spec.here(), f"{entry.type} could not start: {exc}"))
            continue
        if not isinstance(enricher, Enricher):
            problems.append((spec.here("type"), f"{entry.type} built no enricher (it needs lookup() and personal)"))
            continue
        refused = personal_name(entry.record) if getattr(enricher, "personal", True) else None
        if refused is not None:
            problems.append((spec.here("record"), f"{name} is about a person: its {refused!r} must not be recorded"))
        problems.extend(unknown_fields(spec, entry.record, getattr(enricher, "known_fields", None)))
        enrichers[name] = enricher
    return Enrichment(enrichers, record)


class _KnowsNothing:
    """Stands in for an entry that failed to build: the config is refused anyway."""

    personal = False

    def lookup(self, ctx: RequestContext, profile: Profile | None) -> Fields | None:
        return None


_KNOWS_NOTHING = _KnowsNothing()
