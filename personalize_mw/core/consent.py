"""Consent from cookies and headers. Fails closed: what cannot be read is a no.

Sources, in the configured order, first one present wins; within it, every
copy of the cookie must grant a category (a refusal wins):
- ``own``: our consent cookie, ``analytics=1&personalization=0&advertising=0``,
  written by the built-in endpoint (see :mod:`personalize_mw.core.consent_endpoint`);
- ``cc_cookie``: orestbida CookieConsent, JSON with ``categories``;
- ``klaro``: Klaro, JSON ``{service: bool}``;
- ``onetrust``: OneTrust ``OptanonConsent``, URL-encoded with ``groups=C0001:1,...``.

``Sec-GPC: 1`` (exactly) withdraws advertising whatever the cookies say.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from ..config import CATEGORIES, ConsentConfig
from .cookies import HOST_PREFIX, Cookies


@dataclass(frozen=True, slots=True)
class Consent:
    analytics: bool = False
    personalization: bool = False
    advertising: bool = False
    gpc: bool = False
    source: str = "default"

    def record(self) -> dict[str, bool]:
        """The consent block stored with every touchpoint."""
        return {"analytics": self.analytics, "personalization": self.personalization,
                "advertising": self.advertising, "gpc": self.gpc}


DENIED = Consent(source="unreadable")

_MAX_COOKIE = 4096
_SEEN_MAX = 1024  # consent answers kept per reader, of cookies up to 1 KB: 1 MB at most
_SEEN_VALUE_CHARS = 1024


def encode_own(analytics: bool, personalization: bool, advertising: bool) -> str:
    return (f"analytics={int(analytics)}&personalization={int(personalization)}"
            f"&advertising={int(advertising)}")


def _parse_own(value: str, _mapping: Mapping[str, list[str]]) -> dict[str, bool] | None:
    granted: dict[str, bool] = {}
    for part in value.split("&"):
        key, sep, flag = part.partition("=")
        if not sep or key not in CATEGORIES or flag not in ("0", "1") or key in granted:
            return None
        granted[key] = flag == "1"
    return granted if len(granted) == len(CATEGORIES) else None


def _parse_cc_cookie(value: str, mapping: Mapping[str, list[str]]) -> dict[str, bool] | None:
    data = json.loads(unquote(value))
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        return None
    accepted = set(categories)
    return {cat: any(name in accepted for name in mapping.get(cat, ())) for cat in CATEGORIES}


def _parse_klaro(value: str, mapping: Mapping[str, list[str]]) -> dict[str, bool] | None:
    data = json.loads(unquote(value))
    if not isinstance(data, dict) or not all(isinstance(v, bool) for v in data.values()):
        return None
    return {cat: any(data.get(name) is True for name in mapping.get(cat, ())) for cat in CATEGORIES}


def _parse_onetrust(value: str, mapping: Mapping[str, list[str]]) -> dict[str, bool] | None:
    fields = parse_qs(value, keep_blank_values=True, strict_parsing=False)
    groups_field = fields.get("groups")
    if not groups_field:
        return None
    groups: dict[str, bool] = {}
    for item in groups_field[0].split(","):
        name, sep, flag = item.partition(":")
        if not sep or flag not in ("0", "1") or not name:
            return None
        groups[name] = flag == "1"
    return {cat: any(groups.get(name) is True for name in mapping.get(cat, ())) for cat in CATEGORIES}


_Parser = Callable[[str, Mapping[str, list[str]]], "dict[str, bool] | None"]
_READERS: dict[str, tuple[str | None, _Parser]] = {
    # source -> (cookie name, or None for the configured own name; parser)
    "own": (None, _parse_own),
    "cc_cookie": ("cc_cookie", _parse_cc_cookie),
    "klaro": ("klaro", _parse_klaro),
    "onetrust": ("OptanonConsent", _parse_onetrust),
}


class ConsentReader:
    """Reads consent from a request's cookies and headers, per the config."""

    def __init__(self, config: ConsentConfig) -> None:
        self.opt_in = config.mode == "opt-in"
        mappings = config.mapping
        self._sources: list[tuple[str, str, _Parser, Mapping[str, list[str]]]] = []
        for source in config.sources:
            cookie_name, parser = _READERS[source]
            mapping = getattr(mappings, source, {}) if source != "own" else {}
            self._sources.append((source, cookie_name or config.cookie_name, parser, mapping))
        self.cookie_names = tuple(name for _, name, _, _ in self._sources)  # the __Host- one contains its name
        default = not self.opt_in
        self._no_signal = Consent(default, default, default, source="default")
        self._no_signal_gpc = Consent(default, default, False, gpc=True, source="default")
        self._seen: dict[tuple[int, tuple[str, ...], bool], Consent] = {}

    def read(self, cookies: Mapping[str, str], sec_gpc: str | None) -> Consent:
        """Consent from the first source that has a cookie; every copy of it counts (:class:`Cookies`).

        A category is granted only if every copy grants it (a sibling subdomain's
        grant cannot hide this site's refusal), and our own cookie is also read
        under its ``__Host-`` name, which only this host can set, on https.
        """
        gpc = sec_gpc == "1"  # exactly "1"; anything else is no signal
        if not cookies:  # a first visit: no cookie to look through
            return self._no_signal_gpc if gpc else self._no_signal
        for index, (source, cookie_name, parser, mapping) in enumerate(self._sources):
            names = (HOST_PREFIX + cookie_name, cookie_name) if source == "own" else (cookie_name,)
            if isinstance(cookies, Cookies):
                values: tuple[str, ...] = ()
                for name in names:
                    values += cookies.every(name)
            else:
                values = tuple(cookies[name] for name in names if name in cookies)
            if not values:
                continue
            # The same values always give the same (immutable) answer, and a site sees few of
            # them (our own cookie has eight): parse each once. Bounded, the values are the visitor's.
            key = (index, values, gpc)
            found = self._seen.get(key)
            if found is None:
                found = self._parse(source, parser, mapping, values, gpc)
                if sum(map(len, values)) <= _SEEN_VALUE_CHARS:
                    if len(self._seen) >= _SEEN_MAX:
                        self._seen.clear()
                    self._seen[key] = found
            return found
        return self._no_signal_gpc if gpc else self._no_signal

    @staticmethod
    def _parse(source: str, parser: _Parser, mapping: Mapping[str, list[str]], values: tuple[str, ...],
               gpc: bool) -> Consent:
        parsed = [_safe_parse(parser, value, mapping) for value in values]
        grants = [g for g in parsed if g is not None]
        if len(grants) < len(parsed):
            return Consent(gpc=gpc, source=source + ":unreadable")
        granted = {category: all(g[category] for g in grants) for category in CATEGORIES}
        return Consent(granted["analytics"], granted["personalization"],
                       granted["advertising"] and not gpc, gpc, source)


def _safe_parse(parser: _Parser, value: str, mapping: Mapping[str, list[str]]) -> dict[str, bool] | None:
    if len(value) > _MAX_COOKIE:
        return None
    try:
        return parser(value, mapping)
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None
