"""The shared state behind learning strategies (crowd co-occurrences, bandit counts).

``state:`` in the config picks the backend: ``memory`` (default, per process),
``sqlite:PATH`` (the processes of one machine), ``redis://host:port/db`` (many
machines), each parsed by :mod:`personalize_mw.storage.schemes`. :func:`open_store`
builds it; strategies use :class:`StateStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .. import storage
from .backend import Backend
from .store import StateStore

__all__ = ["Backend", "StateStore", "open_store", "check_state_url"]


def check_state_url(url: str) -> None:
    """Raise ValueError for a spec open_store would not understand (config validation)."""
    storage.check(url, "state")


def open_store(url: str, resolve: Callable[[str], Path] = Path, timeout_s: float = 0.05,
               cache_ttl_s: float = 1.0, flush_interval_s: float = 0.5) -> StateStore:
    """The store for a ``state:`` URL; ``?timeout_ms=N`` bounds each call (default 50 ms)."""
    location = storage.locate(url, "state", resolve)
    backend: Backend = storage.handler(location)(location, location.options.get("timeout_ms", timeout_s))
    return StateStore(backend, cache_ttl_s=cache_ttl_s, flush_interval_s=flush_interval_s)
