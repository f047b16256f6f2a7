"""What the project knows about each storage URL scheme: one entry per scheme.

A URL in the config (``sink:``, ``state:``) or on the command line (``report``,
``lift``) starts with a scheme. Its entry says how the rest is parsed (a file
path, a table, a stream, the scheme's own query options) and which function
serves each role:

- ``sink``: stores touchpoint batches (:mod:`personalize_mw.touchpoints`);
- ``privacy``: export, forget and prune over what a sink holds (:mod:`personalize_mw.privacy`);
- ``source``: the sink's records as a DuckDB relation (:mod:`personalize_mw.analytics.source`);
- ``state``: the learning strategies' counters (:mod:`personalize_mw.state`).

Parsing is pure (no file opened, no driver imported), so config validation
checks a URL whole; a role's module, with the driver it needs (psycopg,
redis, duckdb), is imported only when that role is opened.

``?table=NAME`` means the same for sqlite and postgresql in every role that
reads or writes records: the table they live in, ``touchpoints`` unless given
(postgresql also takes ``schema.table``). It is parsed here once, so the sink
that writes a table, the privacy commands that search it and the analytics
that read it agree. For sqlite state it names the counters' table
(``pmw_counters`` unless given).
"""

from __future__ import annotations

import hashlib
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

Resolver = Callable[[str], Path]
ROLES = ("sink", "privacy", "source", "state")
DEFAULT_TABLE = "touchpoints"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)(?=:|\?|$)")
_SIZE = re.compile(r"^(\d+)([KMG]?)i?B?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_PASSWORD = re.compile(r"(//[^/@:]*:)[^/@]*@")
_USERINFO = re.compile(r"//[^/@]*@")


# ---------------------------------------------------------------- option values


def parse_size(text: str) -> int:
    """``104857600``, ``100M``, ``2G``, ``10MiB``: a positive number of bytes."""
    match = _SIZE.match(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"max_bytes must be a positive size such as 104857600 or 100M, not {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def _daily(text: str) -> str:
    if text != "daily":
        raise ValueError(f"rotate must be 'daily', not {text!r}")
    return text


def _maxlen(text: str) -> int | None:
    if not text.isdigit():
        raise ValueError("maxlen must be a whole number")
    return int(text) or None  # 0 keeps everything


def _timeout_ms(text: str) -> float:
    """Milliseconds in (0, 60000], as seconds."""
    try:
        seconds = float(text) / 1000.0
    except ValueError:
        raise ValueError("timeout_ms must be a number") from None
    if not 0 < seconds <= 60:
        raise ValueError("timeout_ms must be in (0, 60000]")
    return seconds


def table_names(value: str, schema: bool = False) -> tuple[str, ...]:
    """A ``?table=`` value as identifier parts; ``schema`` allows ``schema.table``."""
    names = tuple(value.split("."))
    if len(names) > (2 if schema else 1) or not all(_IDENTIFIER.match(name) for name in names):
        also = " (optionally schema.table)" if schema else ""
        raise ValueError(f"table {value!r}: use letters, digits and _{also}")
    return names


# ---------------------------------------------------------------- the registry's types


@dataclass(frozen=True)
class Role:
    """One job a scheme can do: the function that does it, and what its URL may say."""

    handler: str  # "module:attribute", imported on first use
    options: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)  # own query options
    table: str | None = None  # the default table, for a role that takes ?table=


@dataclass(frozen=True)
class Location:
    """A storage URL parsed for one role: everything its handler needs, nothing left to parse."""

    url: str  # as written
    scheme: str  # the entry's name (``postgresql`` for ``postgres://`` too)
    role: str
    path: Path | None = None  # jsonl, sqlite: the file, resolved
    table: tuple[str, ...] = ()  # sqlite, postgresql: the table's name (schema.table in postgresql)
    stream: str | None = None  # redis sink: the stream
    options: Mapping[str, Any] = field(default_factory=dict)  # the role's own options, converted
    address: str = ""  # what a driver connects to: the URL without our options; python: module:name

    @property
    def label(self) -> str:
        return label(self.url)


Parser = Callable[["Scheme", str, str, str, Resolver], dict[str, Any]]


@dataclass(frozen=True)
class Scheme:
    name: str
    example: str  # how the URL looks, for error messages
    parse: Parser  # (scheme, role name, url, rest after the scheme, resolve) -> Location fields
    roles: Mapping[str, Role]
    aliases: tuple[str, ...] = ()
    bare: bool = False  # the name alone is a whole URL (``memory``)
    schema_tables: bool = False  # ?table= may be schema.table
    passthrough: bool = False  # other query parameters belong to the driver (libpq, redis-py)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


# ---------------------------------------------------------------- parsers


def _query_items(query: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` of a file URL, decoded as :func:`urllib.parse.parse_qsl` decodes a network URL's."""
    items = []
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"option {item!r} needs a value: NAME=VALUE")
        items.append((unquote(key), unquote(value)))
    return items


def _own(scheme: Scheme, role_name: str, items: list[tuple[str, str]]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Split query items into (table and the role's options, converted; the rest)."""
    role = scheme.roles[role_name]
    fields: dict[str, Any] = {}
    options: dict[str, Any] = {}
    if role.table is not None:
        fields["table"] = (role.table,)
    rest = []
    for key, value in items:
        if key == "table" and role.table is not None:
            fields["table"] = table_names(value, scheme.schema_tables)
        elif key in role.options:
            options[key] = role.options[key](value)
        elif scheme.passthrough:
            rest.append((key, value))
        else:
            known = (["table=NAME"] if role.table is not None else []) + [f"{k}=..." for k in role.options]
            raise ValueError(f"unknown {scheme.name} option {key}={value!r}: "
                             + (f"use {' or '.join(known)}" if known else "it takes none"))
    fields["options"] = options
    return fields, rest


def _file(scheme: Scheme, role: str, url: str, rest: str, resolve: Resolver) -> dict[str, Any]:
    """``scheme:PATH[?OPTIONS]``, the path relative to the config's folder."""
    path, _, query = rest.partition("?")
    if not path:
        raise ValueError(f"{scheme.name} needs a path: {scheme.example!r}")
    fields, _ = _own(scheme, role, _query_items(query))
    return {**fields, "path": resolve(path)}


def _jsonl(scheme: Scheme, role: str, url: str, rest: str, resolve: Resolver) -> dict[str, Any]:
    fields = _file(scheme, role, url, rest, resolve)
    if {"rotate", "max_bytes"} <= fields["options"].keys():
        raise ValueError("choose one of rotate=daily and max_bytes")
    return fields


def _bare(scheme: Scheme, role: str, url: str, rest: str, resolve: Resolver) -> dict[str, Any]:
    """``memory[?OPTIONS]``: nothing but options."""
    if rest and not rest.startswith("?"):
        raise ValueError(f"write it as {scheme.example!r}")
    fields, _ = _own(scheme, role, _query_items(rest[1:]))
    return fields


def _network(scheme: Scheme, role: str, url: str, rest: str, resolve: Resolver) -> dict[str, Any]:
    """``scheme://[user[:password]@]host[:port]/...[?OPTIONS]``: ours taken out, the driver's kept."""
    parts = urlsplit(url)
    if not (parts.netloc or parts.path.strip("/")):
        raise ValueError(f"write it as {scheme.example!r}")
    fields, kept = _own(scheme, role, parse_qsl(parts.query, keep_blank_values=True))
    return {**fields, "address": urlunsplit(parts._replace(query=urlencode(kept)))}


def _redis(scheme: Scheme, role: str, url: str, rest: str, resolve: Resolver) -> dict[str, Any]:
    """As :func:`_network`; a sink's path is ``/[DB/]STREAM``, the state's ``/DB`` (redis-py's own)."""
    fields = _network(scheme, role, url, rest, resolve)
    if role == "sink":
        parts = urlsplit(fields["address"])
        segments = [unquote(s) for s in parts.path.split("/") if s]
        if len(segments) > 2 or (len(segments) == 2 and not segments[0].isdigit()):
            raise ValueError("the path is /[DB/]STREAM")
        db = segments[0] if len(segments) == 2 else "0"
        fields["stream"] = segments[-1] if segments else DEFAULT_TABLE
        fields["address"] = urlunsplit(parts._replace(path=f"/{db}"))
    return fields


def _whole(scheme: Scheme, role: str, url: str, rest: str, resolve: Resolver) -> dict[str, Any]:
    """The URL as it is, for its driver (http's query string is the collector's)."""
    if not rest.strip("/?"):
        raise ValueError(f"write it as {scheme.example!r}")
    return {"address": url}


def _python(scheme: Scheme, role: str, url: str, rest: str, resolve: Resolver) -> dict[str, Any]:
    module, _, attribute = rest.partition(":")
    if not module or not attribute:
        raise ValueError("write it as python:package.module:name")
    return {"address": rest}


# ---------------------------------------------------------------- the registry

_JSONL_OPTIONS = {"rotate": _daily, "max_bytes": parse_size}
_TIMEOUT = {"timeout_ms": _timeout_ms}
_SOURCE = "personalize_mw.analytics.source"

REGISTRY: tuple[Scheme, ...] = (
    Scheme("jsonl", "jsonl:PATH[?rotate=daily|max_bytes=SIZE]", _jsonl, {
        # privacy and analytics take the sink's own URL, so its options too
        "sink": Role("personalize_mw.touchpoints.jsonl:sink_for", _JSONL_OPTIONS),
        "privacy": Role("personalize_mw.privacy.jsonl:store_for", _JSONL_OPTIONS),
        "source": Role(f"{_SOURCE}:jsonl_relation", _JSONL_OPTIONS),
    }),
    Scheme("sqlite", "sqlite:PATH[?table=NAME]", _file, {
        "sink": Role("personalize_mw.touchpoints.sqlite:sink_for", table=DEFAULT_TABLE),
        "privacy": Role("personalize_mw.privacy.sqlite:store_for", table=DEFAULT_TABLE),
        "source": Role(f"{_SOURCE}:sqlite_relation", table=DEFAULT_TABLE),
        "state": Role("personalize_mw.state.sqlite:backend_for", _TIMEOUT, table="pmw_counters"),
    }),
    Scheme("parquet", "parquet:PATH", _file, {  # what `personalize-mw compact` writes: read, never a sink
        "source": Role(f"{_SOURCE}:parquet_relation"),
    }),
    Scheme("postgresql", "postgresql://USER@HOST/DB[?table=NAME]", _network, {
        "sink": Role("personalize_mw.touchpoints.postgresql:sink_for", table=DEFAULT_TABLE),
        "privacy": Role("personalize_mw.privacy.postgresql:store_for", table=DEFAULT_TABLE),
        "source": Role(f"{_SOURCE}:postgres_relation", table=DEFAULT_TABLE),
    }, aliases=("postgres",), schema_tables=True, passthrough=True),
    Scheme("redis", "redis://HOST:PORT/DB[/STREAM]", _redis, {
        "sink": Role("personalize_mw.touchpoints.redis_stream:sink_for", {"maxlen": _maxlen}),
        "state": Role("personalize_mw.state.redis:backend_for", _TIMEOUT),
    }, aliases=("rediss",), passthrough=True),
    Scheme("unix", "unix:///PATH/redis.sock?db=N", _network, {  # Redis over its Unix socket
        "state": Role("personalize_mw.state.redis:backend_for", _TIMEOUT),
    }, passthrough=True),
    Scheme("http", "https://HOST/PATH", _whole, {
        "sink": Role("personalize_mw.touchpoints.http:sink_for"),
    }, aliases=("https",)),
    Scheme("python", "python:package.module:name", _python, {
        "sink": Role("personalize_mw.touchpoints.python_sink:sink_for"),
        "privacy": Role("personalize_mw.privacy.store:python_store"),  # when the sink implements Store
    }),
    Scheme("memory", "memory", _bare, {
        "state": Role("personalize_mw.state.memory:backend_for", _TIMEOUT),
    }, bare=True),
)

_BY_NAME = {name: scheme for scheme in REGISTRY for name in scheme.names}


def _split(url: str) -> tuple[Scheme | None, str]:
    """(the entry ``url`` names, the rest after ``scheme:``), or (None, url)."""
    match = _SCHEME.match(url)
    scheme = _BY_NAME.get(match.group(1).lower()) if match else None
    if scheme is None or match is None:
        return None, url
    rest = url[match.end():]
    if rest.startswith(":"):
        return scheme, rest[1:]
    return (scheme, rest) if scheme.bare else (None, url)


def scheme_of(url: str) -> Scheme | None:
    """The entry ``url`` names, or None (a plain file path, an unknown scheme)."""
    return _split(url)[0]


def names(role: str) -> tuple[str, ...]:
    """Every scheme name (aliases included) that serves ``role``."""
    return tuple(name for scheme in REGISTRY if role in scheme.roles for name in scheme.names)


def _unknown(url: str, role: str) -> ValueError:
    examples = ", ".join(repr(s.example) for s in REGISTRY if role in s.roles)
    return ValueError(f"unknown {role} {label(url)!r}: use one of {examples}")


def locate(url: str, role: str, resolve: Resolver = Path) -> Location:
    """``url`` parsed for ``role``; ValueError says what is wrong with it. Touches nothing."""
    scheme, rest = _split(url)
    if scheme is None or role not in scheme.roles:
        raise _unknown(url, role)
    if not scheme.bare and not rest.strip("/?"):
        raise _unknown(url, role)
    try:
        fields = scheme.parse(scheme, role, url, rest, resolve)
    except ValueError as exc:
        raise ValueError(f"{role} {label(url)!r}: {exc}") from None
    return Location(url=url, scheme=scheme.name, role=role, **fields)


def check(url: str, role: str) -> str:
    """Raise ValueError unless ``url`` is a whole URL for ``role`` (config validation)."""
    locate(url, role)
    return url


def handler(location: Location) -> Callable[..., Any]:
    """The function serving ``location``'s role, its module imported now."""
    found: Callable[..., Any] = pkgutil.resolve_name(_BY_NAME[location.scheme].roles[location.role].handler)
    return found


def open_location(url: str, role: str, resolve: Resolver = Path, *args: Any) -> Any:
    """``url`` opened for ``role``: a sink, a privacy store (or None), a state backend."""
    location = locate(url, role, resolve)
    return handler(location)(location, *args)


def label(url: str) -> str:
    """The URL as shown in stats, logs and messages: any password (for http(s), the user too) as ***."""
    if url.startswith(("http:", "https:")):  # a collector's user name is its write key
        return _USERINFO.sub("//***@", url)
    return _PASSWORD.sub(r"\1***@", url)


def key(url: str) -> str:
    """A file-name-safe name for what a URL stores (a sink's spool): scheme and a hash, no path, no secret."""
    scheme = url.partition(":")[0]
    return f"{re.sub(r'[^a-z0-9]', '', scheme.lower()) or 'sink'}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"
