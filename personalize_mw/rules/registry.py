"""Where strategy names come from: built-ins, entry points, ``python:module:Class``.

Built-ins are listed as ``module:attribute`` strings and imported on first
use, exactly as a plug-in is: nothing private, and a site that never names
``crowd`` never imports it. ``register()`` lets code (tests, an app) add a
name at run time; entry points in the group ``personalize_mw.rulesets``
are read once, lazily.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import EntryPoint, entry_points

from ..errors import PersonalizeError
from .protocol import RuleSetFactory

ENTRY_POINT_GROUP = "personalize_mw.rulesets"

BUILTINS: dict[str, str] = {
    "rules": "personalize_mw.rules.engine:RulesStrategy",
    "journey": "personalize_mw.rules.journey:JourneyStrategy",
    "split": "personalize_mw.rules.experiment:SplitStrategy",
    "crowd": "personalize_mw.rules.crowd:CrowdStrategy",
    "bandit": "personalize_mw.rules.bandit:BanditStrategy",
}

_registered: dict[str, RuleSetFactory] = {}
_entry_points: dict[str, EntryPoint] | None = None
_lock = threading.Lock()


class UnknownStrategy(PersonalizeError, LookupError):
    """A strategy name that no built-in, registration, entry point or import provides."""


def register(name: str, factory: RuleSetFactory) -> None:
    """Make ``strategy: name`` build ``factory(spec, build)``; a later call replaces it."""
    with _lock:
        _registered[name] = factory


def _import(target: str) -> RuleSetFactory:
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UnknownStrategy(f"{target!r} is not module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownStrategy(f"cannot import {module_name}: {exc}") from None
    found: object = module
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise UnknownStrategy(f"{module_name} has no {attribute}")
    if not callable(found):
        raise UnknownStrategy(f"{target} is not callable")
    return found


def _plugins() -> dict[str, EntryPoint]:
    global _entry_points
    if _entry_points is None:
        _entry_points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _entry_points


def resolve(name: str) -> RuleSetFactory:
    """The factory for a strategy name; raises UnknownStrategy with a reason."""
    if name.startswith("python:"):
        return _import(name[len("python:"):])
    found = _registered.get(name)
    if found is not None:
        return found
    if name in BUILTINS:
        factory = _import(BUILTINS[name])
    else:
        point = _plugins().get(name)
        if point is None:
            known = sorted(set(BUILTINS) | set(_registered) | set(_plugins()))
            raise UnknownStrategy(f"unknown strategy {name!r} (known: {', '.join(known)}, or python:module:Class)")
        try:
            factory = point.load()
        except Exception as exc:  # a broken plug-in is a config error, not a crash
            raise UnknownStrategy(f"entry point {name!r} failed to load: {exc}") from None
    register(name, factory)
    return factory
