"""The enricher plug-in interface: what an enricher is given and what it answers.

An enricher adds fields about the visitor from outside the request: a CRM
(``http``), a MaxMind-format database (``geoip``), a reverse-IP company database
(``company``), or a plug-in. Each one configured under ``enrichment:`` has a name,
and conditions and templates read its fields as ``NAME.field``
(``company.industry``, ``geo.region``).

An enricher is any class (or callable) built once per config at start-up as
``Factory(spec: EnricherSpec)`` and returning an object with:

- ``personal: bool``: True when its data is about a person (a CRM keyed by the
  user id). It is then asked only with personalization consent, and its fields
  are *unknown* without it, as profile fields are.
- ``lookup(ctx, profile) -> Mapping | None`` on the request path, for pages whose
  rules or templates read its fields: from memory or a local file, never the
  network; microseconds. None when it knows nothing. An exception is logged and
  counts as None.
- optionally ``identified(user, account)``: ``identify()`` was called (with
  consent); a remote enricher starts fetching now, in the background.
- optionally ``close()``.
- optionally ``known_fields: frozenset[str] | None``: the fields it can answer, so
  that a ``record:`` naming another one is refused at its line (None: any).

Plug-ins register through the same registry as the built-ins
(:mod:`personalize_mw.enrich.registry`): an entry point in the group
``personalize_mw.enrichers`` or ``type: python:package.module:Class``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..core.context import RequestContext
    from ..core.visitor import Profile

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class EnricherSpec:
    """An ``enrichment:`` entry as its factory sees it at start-up."""

    name: str  # what conditions and templates call it: company.industry
    options: Mapping[str, Any]  # the entry's keys other than `type`
    resolve: Callable[[str], Path]  # a path relative to personalize.yaml
    # True when built only to be checked (load_config, personalize-mw check):
    # start no thread, connect to nothing; reading a local file to check it is fine.
    check_only: bool = False

    def here(self, *keys: str | int) -> tuple[str | int, ...]:
        """A key path for ConfigError, so a mistake is reported with its YAML line."""
        return ("enrichment", self.name) + keys

    def parse(self, model: type[M]) -> M:
        """The options validated by a pydantic model; every mistake a ConfigError at its key."""
        try:
            return model.model_validate(dict(self.options))
        except ValidationError as exc:
            problems = [(self.here(*map(_key, error["loc"])), error["msg"]) for error in exc.errors()]
            raise ConfigError(problems) from None


def _key(part: Any) -> str | int:
    return part if isinstance(part, int) else str(part)


Fields = Mapping[str, Any]


@runtime_checkable
class Enricher(Protocol):
    personal: bool

    def lookup(self, ctx: RequestContext, profile: Profile | None) -> Fields | None:
        """This request's fields, from memory or a local file; None when nothing is known."""


EnricherFactory = Callable[[EnricherSpec], Enricher]
