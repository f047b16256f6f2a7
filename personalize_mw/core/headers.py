"""Header edits for a personalized response, on plain ``(name, value)`` str pairs.

- Content-Length recomputed when the body changed (bytes, not characters);
- ETag and Last-Modified dropped when the page has slots: the app's 304 logic
  would otherwise serve one visitor's copy to another (a download that only
  reached a goal keeps them: its bytes are the app's);
- ``Cache-Control: private`` and ``Vary: Cookie`` merged into what the app set,
  and CDN-only cache headers (CDN-Cache-Control, Surrogate-Control) dropped,
  so shared caches never store a per-visitor page;
- our Set-Cookie appended, never replacing the app's own;
- every header value of ours checked here, the one place they are made: no
  CR, LF or NUL, latin-1 only; one that fails is left out (and logged), so
  nothing a request carried can split a response.
"""

from __future__ import annotations

import functools
import logging

from .personalizer import Outcome

log = logging.getLogger("personalize_mw")


def safe_header_value(name: str, value: str) -> bool:
    """May ``value`` go out as a header? Logs (escaped) when not."""
    # Three ``in`` scans and isascii() run in C at memory speed; a regex over our
    # ~400-character Set-Cookie cost some 5 µs a header, paid on every consenting page.
    if ("\r" not in value and "\n" not in value and "\x00" not in value
            and (value.isascii() or max(value) <= "\xff")):
        return True
    log.error("personalize_mw: header %s left out: its value %r has CR, LF, NUL or non-latin-1 in it",
              name, value[:80])
    return False

_VALIDATORS = frozenset({"etag", "last-modified"})
# Caching rules for CDNs and proxies only (RFC 9213 and vendors' own): they would
# override our Cache-Control: private there (nginx gives X-Accel-Expires priority).
_CDN_ONLY = frozenset({"cdn-cache-control", "surrogate-control", "cloudflare-cdn-cache-control",
                       "akamai-cache-control", "fastly-cache-control", "x-accel-expires"})


@functools.lru_cache(maxsize=256)  # the app's header values: a site sends a handful
def merge_cache_control(value: str | None) -> str:
    directives = [d.strip() for d in value.split(",")] if value else []
    kept = [d for d in directives if d and d.lower() != "public" and not d.lower().startswith("s-maxage")]
    if not any(d.lower() == "private" for d in kept):
        kept.insert(0, "private")
    return ", ".join(kept)


@functools.lru_cache(maxsize=256)
def merge_vary(value: str | None) -> str:
    fields = [f.strip() for f in value.split(",")] if value else []
    if any(f == "*" or f.lower() == "cookie" for f in fields):
        return ", ".join(f for f in fields if f)
    return ", ".join([f for f in fields if f] + ["Cookie"])


def edit_headers(headers: list[tuple[str, str]], outcome: Outcome, body_length: int | None) -> list[tuple[str, str]]:
    """The response headers after ``outcome``; ``body_length`` is set when the body changed."""
    out: list[tuple[str, str]] = []
    cache_control: list[str] = []
    vary: list[str] = []
    drop_validators = outcome.varies or body_length is not None
    for name, value in headers:
        lower = name.lower()
        if lower == "content-length" and body_length is not None:
            continue
        if drop_validators and lower in _VALIDATORS:
            continue
        if outcome.private:
            if lower in _CDN_ONLY:
                continue
            if lower == "cache-control":
                cache_control.append(value)
                continue
            if lower == "vary":
                vary.append(value)
                continue
        out.append((name, value))
    if body_length is not None:
        out.append(("content-length", str(body_length)))
    if outcome.private:
        out.append(("cache-control", merge_cache_control(", ".join(cache_control) or None)))
        out.append(("vary", merge_vary(", ".join(vary) or None)))
    for cookie in outcome.cookies:
        value = cookie.header_value()
        if safe_header_value("set-cookie", value):
            out.append(("set-cookie", value))
    out.extend((name, value) for name, value in outcome.headers if safe_header_value(name, value))
    return out
