"""The shared state behind learning strategies (crowd co-occurrences, bandit counts).

``state:`` in the config picks the backend: ``memory`` (default, per process),
``sqlite:PATH`` (the processes of one machine), ``redis://host:port/db`` (many
machines). :func:`open_store` builds it; strategies use :class:`StateStore`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from .backend import Backend
from .store import StateStore

__all__ = ["Backend", "StateStore", "open_store", "check_state_url"]


def check_state_url(url: str) -> None:
    """Raise ValueError for a spec open_store would not understand (config validation)."""
    if url == "memory" or url.startswith(("redis://", "rediss://", "unix://")):
        return
    if url.startswith("sqlite:") and len(url) > len("sqlite:"):
        return
    raise ValueError(f"state {url!r}: use memory, sqlite:PATH or redis://host:port/db")


def open_store(url: str, resolve: Callable[[str], Path] = Path, timeout_s: float = 0.05,
               cache_ttl_s: float = 1.0, flush_interval_s: float = 0.5) -> StateStore:
    check_state_url(url)
    backend: Backend
    if url == "memory":
        from .memory import MemoryBackend

        backend = MemoryBackend()
    elif url.startswith("sqlite:"):
        from .sqlite import SqliteBackend

        backend = SqliteBackend(resolve(url[len("sqlite:"):]), timeout_s)
    else:
        from .redis import RedisBackend

        backend = RedisBackend(url, timeout_s)
    return StateStore(backend, cache_ttl_s=cache_ttl_s, flush_interval_s=flush_interval_s)
