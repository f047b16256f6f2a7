"""A sink of the site's own: ``python:package.module:name``.

``name`` (dots reach into the module: ``python:myapp.sinks:Warehouse.sink``) is
either a callable taking the batch, or a class or object with ``write(batch)``
and optionally ``close()``; a class is instantiated with no arguments. It runs
in the sink worker's thread, never on the request path. Raising asks for a
retry of the same batch (same ids) after a backoff; raising
``personalize_mw.touchpoints.sink.PermanentSinkError`` gives the batch up.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .sink import Sink

if TYPE_CHECKING:
    from ..config import HttpSinkConfig
    from ..storage import Location


class CallableSink:
    """A plain function as a sink."""

    def __init__(self, function: Callable[[list[dict[str, Any]]], object]) -> None:
        self.function = function

    def write(self, records: list[dict[str, Any]]) -> None:
        self.function(records)

    def close(self) -> None:
        pass


class _WithClose:
    """An object that has write() but no close()."""

    def __init__(self, target: Any) -> None:
        self.write = target.write

    def close(self) -> None:
        pass


def load_python_sink(spec: str) -> Sink:
    """``spec`` is ``module:name`` (the part after ``python:``)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"python sink {spec!r}: write it as python:package.module:name")
    try:
        target: Any = pkgutil.resolve_name(spec)
    except ImportError as exc:
        raise ValueError(f"python sink {spec!r}: cannot import {module_name!r}: {exc}") from exc
    except AttributeError:
        raise ValueError(f"python sink {spec!r}: {module_name} has no {attribute!r}") from None
    if isinstance(target, type):
        target = target()
    if callable(getattr(target, "write", None)):
        return target if callable(getattr(target, "close", None)) else _WithClose(target)
    if callable(target):
        return CallableSink(target)
    raise ValueError(f"python sink {spec!r}: {attribute!r} is neither callable nor has write(batch)")


def sink_for(location: Location, http: HttpSinkConfig | None = None) -> Sink:
    """The registry's entry point: ``python:package.module:name``."""
    return load_python_sink(location.address)
