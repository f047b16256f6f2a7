"""Plug-in names: built-ins, registrations, entry points, ``python:module:Class``.

One registry per kind of plug-in (strategies in :mod:`.rules.registry`, enrichers
in :mod:`.enrich.registry`). Built-ins are ``module:attribute`` strings imported on
first use, exactly as a plug-in is: nothing private, and a site that never names
one never imports it. Entry points of the registry's group are read once, lazily.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from .errors import PersonalizeError

F = TypeVar("F")


class UnknownPlugin(PersonalizeError, LookupError):
    """A plug-in name that no built-in, registration, entry point or import provides."""


class PluginRegistry(Generic[F]):
    def __init__(self, kind: str, group: str, builtins: Mapping[str, str],
                 error: type[UnknownPlugin] = UnknownPlugin) -> None:
        self.kind = kind  # "strategy", "enricher": in error messages
        self.group = group
        self.builtins = dict(builtins)
        self.error = error
        self.registered: dict[str, F] = {}
        self.entry_points: dict[str, EntryPoint] | None = None
        self._lock = threading.Lock()

    def register(self, name: str, factory: F) -> None:
        """Make ``name`` build ``factory``; a later call replaces it."""
        with self._lock:
            self.registered[name] = factory

    def _import(self, target: str) -> F:
        module_name, _, attribute = target.partition(":")
        if not module_name or not attribute:
            raise self.error(f"{target!r} is not module:Class")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise self.error(f"cannot import {module_name}: {exc}") from None
        found: Any = module
        for part in attribute.split("."):
            found = getattr(found, part, None)
            if found is None:
                raise self.error(f"{module_name} has no {attribute}")
        if not callable(found):
            raise self.error(f"{target} is not callable")
        return found

    def _plugins(self) -> dict[str, EntryPoint]:
        if self.entry_points is None:
            self.entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self.entry_points

    def resolve(self, name: str) -> F:
        """The factory for a name; raises the registry's error with a reason."""
        if name.startswith("python:"):
            return self._import(name[len("python:"):])
        found = self.registered.get(name)
        if found is not None:
            return found
        if name in self.builtins:
            factory = self._import(self.builtins[name])
        else:
            point = self._plugins().get(name)
            if point is None:
                known = sorted(set(self.builtins) | set(self.registered) | set(self._plugins()))
                raise self.error(f"unknown {self.kind} {name!r} (known: {', '.join(known)}, "
                                 "or python:module:Class)")
            try:
                factory = point.load()
            except Exception as exc:  # a broken plug-in is a config error, not a crash
                raise self.error(f"entry point {name!r} failed to load: {exc}") from None
        self.register(name, factory)
        return factory
