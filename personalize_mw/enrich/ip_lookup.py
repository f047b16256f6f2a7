"""What the enrichers keyed by the client address share: the address, a bounded cache, the file.

The address is the peer the server saw (``RequestContext.client``), as for
``ip: truncate``: behind a proxy, let the server rewrite it (uvicorn
``--proxy-headers --forwarded-allow-ips``, werkzeug's ``ProxyFix``); the
middleware never trusts ``X-Forwarded-For`` itself. Answers are kept per address
in memory only (an LRU of ``cache_size`` entries, per process), never written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ..core.ip import IPAddress, client_address
from ..errors import ConfigError
from .protocol import EnricherSpec, Fields

if TYPE_CHECKING:
    from maxminddb.reader import Reader

    from ..core.context import RequestContext
    from ..core.visitor import Profile


class IpOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    database: str = Field(min_length=1)  # relative to personalize.yaml
    cache_size: int = Field(65_536, ge=1, le=10_000_000)  # addresses remembered per process


class IpEnricher:
    """An enricher of the place or company behind the client address: no consent needed to ask."""

    personal = False

    def __init__(self, find: Callable[[IPAddress], Fields | None], cache_size: int,
                 close: Callable[[], None] | None = None) -> None:
        self._find = find
        self._close = close
        # functools' LRU is C and thread-safe: a cached answer costs a dictionary read.
        self._cached = functools.lru_cache(maxsize=cache_size)(self._uncached)

    def _uncached(self, address: str | None) -> Fields | None:
        ip = client_address(address)
        return self._find(ip) if ip is not None else None

    def lookup(self, ctx: RequestContext, profile: Profile | None) -> Fields | None:
        return self._cached(ctx.client)

    def close(self) -> None:
        self._cached.cache_clear()
        if self._close is not None:
            self._close()


def database_path(spec: EnricherSpec, database: str) -> Path:
    path = spec.resolve(database)
    if not path.is_file():
        raise ConfigError([(spec.here("database"), f"no database file {path}")])
    return path


def open_mmdb(spec: EnricherSpec, path: Path) -> Reader:
    """A MaxMind-format database, memory-mapped; a bad file is a ConfigError at ``database``."""
    try:
        import maxminddb
    except ImportError:
        raise ConfigError([(spec.here("type"), "reading .mmdb files needs maxminddb: "
                            "pip install 'personalize_mw[geoip]'")]) from None
    try:
        return maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ConfigError([(spec.here("database"), f"{path} is not a MaxMind DB file: {exc}")]) from None


def dig(record: Any, dotted: str) -> Any:
    """``record['a']['b']`` for 'a.b'; None where the path does not lead."""
    for part in dotted.split("."):
        if not isinstance(record, Mapping):
            return None
        record = record.get(part)
    return record
