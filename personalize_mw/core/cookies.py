"""Reading the Cookie header and writing Set-Cookie values, nothing more."""

from __future__ import annotations

from typing import Literal, NamedTuple

from . import compiled

HOST_PREFIX = "__Host-"  # on https our cookies carry it: no sibling subdomain can set one

# Far past what servers accept (h11 and gunicorn: 8-16 KB of headers in all);
# a header longer than this cannot be read whole, and fails closed.
MAX_COOKIE_HEADER = 64 * 1024


class Cookies(dict[str, str]):
    """name -> value, the first occurrence of a name winning; every copy still at hand.

    A sibling subdomain can set a cookie of the same name for the parent domain,
    and the browser sends both: where a refusal may hide behind a grant (consent),
    :meth:`every` gives all of them, from the one reading of the header.
    """

    __slots__ = ("repeats",)

    def __init__(self) -> None:
        super().__init__()
        self.repeats: dict[str, list[str]] | None = None  # later copies of a name, rarely any

    def every(self, name: str) -> tuple[str, ...]:
        first = self.get(name)
        if first is None:
            return ()
        more = self.repeats.get(name) if self.repeats else None
        return (first, *more) if more else (first,)


class _Unreadable(Cookies):
    """No cookies, because the header was too long to read whole (see :data:`UNREADABLE`)."""


# Consent is denied for it, and no cookie of ours is expired: a refusal or a
# profile may be in the part that was not read.
UNREADABLE: Cookies = _Unreadable()


def mentions(header: str, names: tuple[str, ...]) -> bool:
    """Whether any of ``names`` is in ``header``: a substring is enough to look closer."""
    for name in names:  # each with ``in``: a regex alternation costs more
        if name in header:
            return True
    return False


def parse_cookie_header(header: str | None, wanted: tuple[str, ...] | None = None) -> Cookies:
    """Cookie header -> {name: value}; the first occurrence of a name wins (see :class:`Cookies`).

    The whole header is read, so our cookies are found wherever they are in it
    (after kilobytes of other sites' cookies too); one over MAX_COOKIE_HEADER
    gives :data:`UNREADABLE`. Hand-rolled because http.cookies.SimpleCookie
    rejects a whole header for one odd cookie set by someone else, and is slow.
    ``wanted``: the only names the caller reads; a header containing none of them
    (as substrings) gives no cookies without being split, as most first visits'
    analytics cookies do.
    """
    cookies = Cookies()
    if not header:
        return cookies
    if len(header) > MAX_COOKIE_HEADER:
        return UNREADABLE
    if wanted is not None and not mentions(header, wanted):
        return cookies
    repeats = cookie_pairs(cookies, header)
    if repeats:
        cookies.repeats = {}
        for name, value in repeats:
            cookies.repeats.setdefault(name, []).append(value)
    return cookies


def _cookie_pairs_py(cookies: dict[str, str], header: str) -> list[tuple[str, str]]:
    """The header's cookies into ``cookies`` (the first of a name wins); the later copies, returned."""
    repeats = []
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name = name.strip(" \t")  # RFC 6265 5.2: only SP and HTAB around a name or value
        value = value.strip(" \t")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if not name:
            continue
        if name not in cookies:
            cookies[name] = value
        else:
            repeats.append((name, value))
    return repeats


def _cookie_pairs_compiled(cookies: dict[str, str], header: str) -> list[tuple[str, str]]:
    """The same in one C call (a consenting visitor's four cookies: about a microsecond less)."""
    repeats = _compiled_pairs(cookies, header)
    return repeats if repeats is not None else _cookie_pairs_py(cookies, header)


if compiled.scan is not None:
    _compiled_pairs = compiled.scan.cookie_pairs
    cookie_pairs = _cookie_pairs_compiled
else:
    cookie_pairs = _cookie_pairs_py


class CookieSpec(NamedTuple):
    """One cookie to set (or, with max_age=0, to expire).

    A NamedTuple: immutable like a frozen dataclass, built in a third of the
    instructions (a frozen dataclass sets each field through object.__setattr__).
    """

    name: str
    value: str
    max_age: int
    http_only: bool = True
    secure: bool = False
    same_site: Literal["Lax", "Strict", "None"] = "Lax"
    path: str = "/"

    def header_value(self) -> str:
        value = f"{self.name}={self.value}; Max-Age={self.max_age}; Path={self.path}; SameSite={self.same_site}"
        if self.secure:
            value += "; Secure"
        if self.http_only:
            value += "; HttpOnly"
        return value
