"""``POST /_personalize/consent``: records the visitor's choice in our consent cookie.

Works without JavaScript: a plain HTML form posts here and is redirected
back (303). A script may post JSON instead and gets 204. Only same-origin
requests are accepted, so another site cannot grant consent on a visitor's
behalf. Withdrawing personalization expires the id cookie at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from ..config import CATEGORIES
from .consent import encode_own
from .context import RequestContext
from .cookies import HOST_PREFIX, CookieSpec, parse_cookie_header
from .headers import safe_header_value
from .personalizer import Personalizer

MAX_BODY = 4096


@dataclass(slots=True)
class EndpointResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    cookies: list[CookieSpec] = field(default_factory=list)

    def status_line(self) -> str:
        """WSGI's "200 OK"."""
        return f"{self.status} {HTTPStatus(self.status).phrase}"

    def safe_headers(self) -> list[tuple[str, str]]:
        """The headers (not Set-Cookie) that pass the one check every header value of ours goes through."""
        return [(n, v) for n, v in self.headers if safe_header_value(n, v)]

    def header_list(self) -> list[tuple[str, str]]:
        """All headers, Set-Cookie and Content-Length included, for ASGI and WSGI."""
        cookies = [("set-cookie", c.header_value()) for c in self.cookies]
        return (self.safe_headers() + [(n, v) for n, v in cookies if safe_header_value(n, v)]
                + [("content-length", str(len(self.body)))])


def _error(status: int, message: str) -> EndpointResponse:
    return EndpointResponse(status, [("content-type", "text/plain; charset=utf-8"),
                                     ("cache-control", "no-store")], message.encode())


_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def _origin(scheme: str, host: str) -> str:
    """scheme://host with the scheme's default port left out, lower case."""
    scheme = scheme.lower()
    host = host.lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def same_origin(ctx: RequestContext) -> bool:
    """Origin, else Sec-Fetch-Site, else Referer must name this very site."""
    headers = ctx.headers
    own = _origin(ctx.scheme, ctx.host)
    origin = headers.get("origin")
    if origin is not None:
        scheme, sep, host = origin.partition("://")
        return bool(sep) and _origin(scheme, host) == own
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    referer = headers.get("referer")
    if referer:
        try:
            parts = urlsplit(referer)
        except ValueError:
            return False
        return _origin(parts.scheme, parts.netloc) == own
    return False


def _choices(body: bytes, content_type: str) -> dict[str, bool] | None:
    """{category: granted} from JSON or a form; None if it cannot be read."""
    if content_type.startswith("application/json"):
        data = json.loads(body)
        if not isinstance(data, dict):
            return None
        if data.get("all") is True:
            return dict.fromkeys(CATEGORIES, True)
        values: dict[str, Any] = {c: data.get(c, False) for c in CATEGORIES}  # JSON: checked below
        return values if all(isinstance(v, bool) for v in values.values()) else None
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        choice = form.get("choice", "custom")
        if choice == "accept_all":
            return dict.fromkeys(CATEGORIES, True)
        if choice == "reject_all":
            return dict.fromkeys(CATEGORIES, False)
        if choice != "custom":
            return None
        return {c: form.get(c) in ("1", "on", "true", "yes") for c in CATEGORIES}
    return None


def _safe_next(target: str | None) -> str:
    """Only a path on this site: no scheme, no '//host', no backslash tricks."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        # Percent-encode controls, spaces and non-ASCII: no CR/LF in a header, no
        # '/<tab>/evil.example' (browsers drop tabs), nothing latin-1 cannot carry.
        return quote(target[:2048], safe="/?#[]@!$&'()*+,;=:%~")
    return "/"


def handle_consent(core: Personalizer, ctx: RequestContext, body: bytes) -> EndpointResponse:
    if ctx.method != "POST":
        response = _error(405, "POST your consent choice here.\n")
        response.headers.append(("allow", "POST"))
        return response
    if not same_origin(ctx):
        return _error(403, "Consent can only be given from this site.\n")
    if len(body) > MAX_BODY:
        return _error(413, "Consent request too large.\n")
    content_type = ctx.headers.get("content-type", "").lower()
    try:
        choices = _choices(body, content_type)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[... JSON
        choices = None
    if choices is None:
        return _error(400, 'Send JSON {"analytics": true, "personalization": false, "advertising": false} '
                      "or a form with choice=accept_all|reject_all|custom.\n")
    secure = core.cookie_secure(ctx)
    config = core.config.consent
    # On https the cookie is __Host- prefixed (a sibling subdomain cannot set one), and a
    # plain copy this host set before is expired: a refusal in any copy wins, so an old
    # plain refusal would otherwise outvote a new grant.
    name = HOST_PREFIX + config.cookie_name if secure else config.cookie_name
    cookies = [CookieSpec(name, encode_own(**choices), config.max_age_days * 86400,
                          http_only=False, secure=secure)]  # readable by a banner script
    if secure and config.cookie_name in parse_cookie_header(ctx.headers.get("cookie")):
        cookies.append(CookieSpec(config.cookie_name, "", 0, http_only=False, secure=True))
    if not choices["personalization"]:
        cookies.append(CookieSpec(core.codec.name_for(secure), "", 0, secure=secure))
    headers = [("cache-control", "no-store")]
    if content_type.startswith("application/json"):
        return EndpointResponse(204, headers, cookies=cookies)
    headers.append(("location", back_to(ctx, dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True)))))
    return EndpointResponse(303, headers, cookies=cookies)


def back_to(ctx: RequestContext, form: dict[str, str]) -> str:
    """Where a form post is sent back to (303): its ``next`` field, else the page it came from, on this site."""
    referer_path = None
    if ctx.headers.get("referer"):
        try:
            parts = urlsplit(ctx.headers["referer"])
            referer_path = parts.path + (f"?{parts.query}" if parts.query else "")
        except ValueError:
            referer_path = None
    return _safe_next(form.get("next") or referer_path)
