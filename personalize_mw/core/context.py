"""What the request itself says: path, query, UTM, referrer, device, language, country.

Everything here is derived lazily: most requests never ask for most fields,
and the request path is paid for on every page view.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import unquote_plus, urlsplit

UTM_KEYS = ("source", "medium", "campaign", "term", "content")
_MAX_FIELD = 1024  # bytes of any header we look at; longer input is cut, not trusted


def _clip(value: str | None) -> str | None:
    return value[:_MAX_FIELD] if value else value


class RequestContext:
    """The request as rules and records see it. Header names are lower case."""

    __slots__ = ("method", "scheme", "host", "path", "query_string", "headers",
                 "country_header", "client", "_query", "_utm", "_referrer_host", "_device", "_language",
                 "_country", "enriched")

    def __init__(
        self,
        method: str,
        scheme: str,
        host: str,
        path: str,
        query_string: str,
        headers: Mapping[str, str],
        country_header: str = "cf-ipcountry",
        client: str | None = None,
    ) -> None:
        self.method = method
        self.scheme = scheme
        self.host = host
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.country_header = country_header
        self.client = client  # the peer address as the server saw it; never stored whole
        self._query: dict[str, str] | None = None
        self._utm: dict[str, str | None] | None = None
        self._referrer_host: str | None | Literal[False] = False  # False: not read yet
        self._device: str | None = None
        self._language: str | None | Literal[False] = False
        self._country: str | None | Literal[False] = False
        self.enriched: dict[str, Any] | None = None  # enricher name -> its answer, asked once per request

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = parse_query(self.query_string) if self.query_string else {}
        return self._query

    @property
    def utm(self) -> dict[str, str | None]:
        if self._utm is None:
            if self.query_string:
                get = self.query.get  # spelt out: a comprehension is one more call on every request
                self._utm = {"source": get("utm_source") or None, "medium": get("utm_medium") or None,
                             "campaign": get("utm_campaign") or None, "term": get("utm_term") or None,
                             "content": get("utm_content") or None}
            else:
                self._utm = dict.fromkeys(UTM_KEYS)
        return self._utm

    @property
    def referrer_host(self) -> str | None:
        if self._referrer_host is False:
            referer = self.headers.get("referer")
            self._referrer_host = _host_of(referer[:_MAX_FIELD]) if referer else None
        return self._referrer_host

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = classify_device(self.headers.get("user-agent", "")[:_MAX_FIELD])
        return self._device

    @property
    def language(self) -> str | None:
        if self._language is False:
            value = self.headers.get("accept-language")
            self._language = primary_language(value[:_MAX_FIELD] if value else value)
        return self._language

    @property
    def country(self) -> str | None:
        if self._country is False:  # read by rules, the decision memo's keys, templates and records
            value = _clip(self.headers.get(self.country_header))
            self._country = value.upper() if value and len(value) == 2 and value.isalpha() else None
        return self._country

    @property
    def secure(self) -> bool:
        return self.scheme in ("https", "wss")


def parse_query(query_string: str) -> dict[str, str]:
    """``a=1&b=x+y`` -> {'a': '1', 'b': 'x y'}; the first value of a name wins, values are cut.

    parse_qsl's results for '&'-separated input, at a fraction of its cost: a
    part is unquoted only when it has '%' or '+' in it, which most do not.
    """
    query: dict[str, str] = {}
    for part in query_string[:4096].split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in part or "+" in part:
            key, value = unquote_plus(key), unquote_plus(value)
        if key not in query:
            query[key] = value[:_MAX_FIELD]
    return query


_BOTS = ("bot", "crawler", "spider", "slurp", "headless", "lighthouse", "curl/", "python-")
_TABLETS = ("ipad", "tablet", "kindle", "silk/")


# The header-derived fields are pure functions of a header's value, and a site sees the
# same few user agents, languages and referrers again and again: each is worked out once.
# Bounded (values are cut to _MAX_FIELD): at most ~1 MB each.
@functools.lru_cache(maxsize=1024)
def _host_of(referer: str) -> str | None:
    try:
        return urlsplit(referer).hostname or None
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def classify_device(user_agent: str) -> str:
    ua = user_agent[:_MAX_FIELD].lower()
    if not ua or any(token in ua for token in _BOTS):
        return "bot"
    if any(token in ua for token in _TABLETS) or ("android" in ua and "mobile" not in ua):
        return "tablet"
    if "mobi" in ua or "iphone" in ua or "android" in ua:
        return "mobile"
    return "desktop"


@functools.lru_cache(maxsize=1024)
def primary_language(accept_language: str | None) -> str | None:
    """The first language tag's primary subtag, lower case: 'de-CH,de;q=0.9' -> 'de'."""
    if not accept_language:
        return None
    first = accept_language[:_MAX_FIELD].split(",", 1)[0].split(";", 1)[0].strip()
    primary = first.split("-", 1)[0].lower()
    return primary if primary.isalpha() and 1 < len(primary) < 9 else None


# ---------------------------------------------------------------- channels

DEFAULT_MEDIUMS: Mapping[str, str] = {
    "cpc": "paid_search", "ppc": "paid_search", "paid": "paid_search",
    "paidsearch": "paid_search", "paid_search": "paid_search", "sem": "paid_search",
    "email": "email", "e-mail": "email", "newsletter": "email",
    "social": "social", "social-network": "social", "social-media": "social", "sm": "social",
    "paid_social": "social", "paid-social": "social",
    "display": "display", "banner": "display", "cpm": "display", "programmatic": "display",
    "organic": "organic", "referral": "referral", "affiliate": "referral",
}
DEFAULT_SOURCES: Mapping[str, str] = {
    "newsletter": "email", "mailchimp": "email", "hubspot_email": "email",
    "facebook": "social", "linkedin": "social", "twitter": "social", "x": "social",
    "instagram": "social", "youtube": "social", "reddit": "social",
}
DEFAULT_REFERRERS: Mapping[str, str] = {
    "google": "organic", "bing": "organic", "duckduckgo": "organic", "yahoo": "organic",
    "baidu": "organic", "yandex": "organic", "ecosia": "organic", "qwant": "organic",
    "facebook": "social", "linkedin": "social", "lnkd": "social", "t": "social",
    "twitter": "social", "x": "social", "instagram": "social", "reddit": "social",
    "youtube": "social", "news.ycombinator": "social", "mastodon": "social",
}


class ChannelClassifier:
    """Channel of a touch, from UTM first (explicit intent), then the referrer host."""

    def __init__(
        self,
        mediums: Mapping[str, str] | None = None,
        sources: Mapping[str, str] | None = None,
        referrers: Mapping[str, str] | None = None,
    ) -> None:
        self.mediums = {**DEFAULT_MEDIUMS, **{k.lower(): v for k, v in (mediums or {}).items()}}
        self.sources = {**DEFAULT_SOURCES, **{k.lower(): v for k, v in (sources or {}).items()}}
        self.referrers = {**DEFAULT_REFERRERS, **{k.lower(): v for k, v in (referrers or {}).items()}}

    def classify(self, utm: Mapping[str, str | None], referrer_host: str | None, own_host: str) -> str:
        medium = (utm.get("medium") or "").lower()
        source = (utm.get("source") or "").lower()
        if medium in self.mediums:
            return self.mediums[medium]
        if source in self.sources:
            return self.sources[source]
        if medium or source:
            return "referral"
        if not referrer_host or _same_site(referrer_host, own_host):
            return "direct"
        return self._by_referrer(referrer_host.lower())

    def _by_referrer(self, host: str) -> str:
        if host in self.referrers:
            return self.referrers[host]
        labels = host.split(".")
        if labels[0] in ("www", "m", "l", "lm", "mobile"):
            labels = labels[1:]
        # 'google.co.uk' -> 'google'; 'news.ycombinator.com' -> 'news.ycombinator'
        for end in range(len(labels) - 1, 0, -1):
            name = ".".join(labels[:end])
            if name in self.referrers:
                return self.referrers[name]
        return "referral"


def _same_site(referrer_host: str, own_host: str) -> bool:
    own = own_host.split(":", 1)[0].lower()
    return referrer_host.lower() == own
