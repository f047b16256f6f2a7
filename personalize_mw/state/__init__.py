"""The shared state behind learning strategies (crowd co-occurrences, bandit counts).

``state:`` in the config picks the backend: ``memory`` (default, per process),
``sqlite:PATH`` (the processes of one machine), ``redis://host:port/db`` (many
machines). :func:`open_store` builds it; strategies use :class:`StateStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .backend import Backend
from .store import StateStore

__all__ = ["Backend", "StateStore", "open_store", "check_state_url"]


def _split(url: str) -> tuple[str, float | None]:
    """The URL without ``timeout_ms=N`` (any backend's query option), and that timeout in seconds."""
    base, _, query = url.partition("?")
    timeout: float | None = None
    kept = []
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        if key == "timeout_ms":
            try:
                timeout = float(value) / 1000.0
            except ValueError:
                raise ValueError(f"state {url!r}: timeout_ms must be a number") from None
            if not 0 < timeout <= 60:
                raise ValueError(f"state {url!r}: timeout_ms must be in (0, 60000]")
        else:
            kept.append(pair)
    return base + ("?" + "&".join(kept) if kept else ""), timeout


def check_state_url(url: str) -> None:
    """Raise ValueError for a spec open_store would not understand (config validation)."""
    base, _ = _split(url)
    if base == "memory" or base.startswith(("redis://", "rediss://", "unix://")):
        return
    if base.startswith("sqlite:") and len(base) > len("sqlite:"):
        return
    raise ValueError(f"state {url!r}: use memory, sqlite:PATH or redis://host:port/db (optionally ?timeout_ms=N)")


def open_store(url: str, resolve: Callable[[str], Path] = Path, timeout_s: float = 0.05,
               cache_ttl_s: float = 1.0, flush_interval_s: float = 0.5) -> StateStore:
    """The store for a ``state:`` URL; ``?timeout_ms=N`` bounds each call (default 50 ms)."""
    check_state_url(url)
    url, timeout = _split(url)
    timeout_s = timeout if timeout is not None else timeout_s
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
