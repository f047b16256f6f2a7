"""Reading the Cookie header and writing Set-Cookie values, nothing more."""

from __future__ import annotations

from dataclasses import dataclass

HOST_PREFIX = "__Host-"  # on https our cookies carry it: no sibling subdomain can set one

# Far past what servers accept (h11 and gunicorn: 8-16 KB of headers in all);
# a header longer than this cannot be read whole, and fails closed.
MAX_COOKIE_HEADER = 64 * 1024


class _Unreadable(dict[str, str]):
    """No cookies, because the header was too long to read whole (see :data:`UNREADABLE`)."""


# Consent is denied for it, and no cookie of ours is expired: a refusal or a
# profile may be in the part that was not read.
UNREADABLE: dict[str, str] = _Unreadable()


def parse_cookie_header(header: str | None) -> dict[str, str]:
    """Cookie header -> {name: value}; the first occurrence of a name wins.

    The whole header is read, so our cookies are found wherever they are in it
    (after kilobytes of other sites' cookies too); one over MAX_COOKIE_HEADER
    gives :data:`UNREADABLE`. Hand-rolled because http.cookies.SimpleCookie
    rejects a whole header for one odd cookie set by someone else, and is slow.
    """
    cookies: dict[str, str] = {}
    if not header:
        return cookies
    if len(header) > MAX_COOKIE_HEADER:
        return UNREADABLE
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name = name.strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name and name not in cookies:
            cookies[name] = value
    return cookies


def cookie_values(header: str | None, name: str) -> list[str]:
    """Every value the header carries for ``name``, in order.

    A sibling subdomain can set a cookie of the same name for the parent domain,
    and the browser sends both: where a refusal may hide behind a grant, all of
    them are read, not the first.
    """
    if not header or name not in header or len(header) > MAX_COOKIE_HEADER:
        return []
    values = []
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip() == name:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            values.append(value)
    return values


@dataclass(frozen=True, slots=True)
class CookieSpec:
    """One cookie to set (or, with max_age=0, to expire)."""

    name: str
    value: str
    max_age: int
    http_only: bool = True
    secure: bool = False
    same_site: str = "Lax"
    path: str = "/"

    def header_value(self) -> str:
        parts = [f"{self.name}={self.value}", f"Max-Age={self.max_age}", f"Path={self.path}",
                 f"SameSite={self.same_site}"]
        if self.secure:
            parts.append("Secure")
        if self.http_only:
            parts.append("HttpOnly")
        return "; ".join(parts)
