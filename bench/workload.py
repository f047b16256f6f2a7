"""What the benchmark serves and who asks for it: the page, the rules, the visitors, the apps.

Kept apart from the timing loop so that ``overhead.py`` and ``profile_path.py``
measure exactly the same work. The apps return prebuilt bodies: the bare
figure is then the framework alone, which makes the ratio a conservative one.
"""

from __future__ import annotations

import io
import re
import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from flask import Flask, Response as FlaskResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SLOTS = ("hero", "cta", "proof", "sidebar", "footer")
PAGE_BYTES = 50 * 1024
HOST = "www.example.com"

# ---------------------------------------------------------------- the page

_PARAGRAPH = (
    "<p>Teams in Zürich, Montréal, São Paulo and Kraków ship reports twice as fast — "
    "naïve spreadsheets out, one source of truth in. Pricing from €9 per seat; "
    "„Endlich Übersicht“, says a café chain’s CFO. データを一か所に。</p>\n"
)
_DEFAULTS = {
    "hero": '<h1>Analytics your whole team trusts</h1>\n<p>Start free, no card needed.</p>',
    "cta": '<a class="btn" href="/signup">Start your free trial</a>',
    "proof": "<p>Trusted by 2,000 teams in 40 countries.</p>",
    "sidebar": '<aside><h3>New on the blog</h3><a href="/blog/attribution">Attribution, explained</a></aside>',
    "footer": "<p>Questions? Our team answers within a day.</p>",
}


def _page(with_markers: bool) -> bytes:
    """~50 KiB of UTF-8 HTML with the five blocks spread from top to bottom."""
    head = ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Acme Analytics — reports in minutes</title>\n<style>"
            + "body{font:16px/1.5 system-ui}.btn{padding:.5em 1em;border-radius:4px}" * 20
            + "</style></head>\n<body><nav><a href=\"/\">Home</a> · <a href=\"/pricing\">Pricing</a> · "
            "<a href=\"/blog\">Blog</a></nav>\n")
    sections = []
    for name in SLOTS:
        block = _DEFAULTS[name]
        if with_markers:
            block = f"<!-- personalize:{name} -->{block}<!-- /personalize:{name} -->"
        sections.append(block)
    tail = "</body></html>\n"
    fixed = len((head + "".join(sections) + tail).encode())
    per_gap = (PAGE_BYTES - fixed) // len(SLOTS)
    filler_unit = _PARAGRAPH.encode()
    parts = [head]
    for block in sections:
        parts.append(block + "\n<section>\n")
        repeats = per_gap // len(filler_unit)
        parts.append(_PARAGRAPH * repeats)
        parts.append("</section>\n")
    parts.append(tail)
    return "".join(parts).encode("utf-8")


PAGE = _page(with_markers=True)
PLAIN_PAGE = _page(with_markers=False)
JSON_BODY = json.dumps({"plans": [{"id": i, "name": f"Plan {i}", "seats": 5 * i, "price_eur": 9 * i}
                                  for i in range(1, 9)]}).encode()

# ---------------------------------------------------------------- the rules

_TEMPLATES = {
    "customer": "<h1>Welcome back — your workspace is ready</h1>",
    "pricing": ('<h1>Plans from €9 per seat</h1><p>Visit {{ visitor.visits }}: compare plans side by side.</p>'
                '<a href="/pricing#compare">Compare plans</a>'),
    "social": "<h1>Hello from {{ request.utm.source | default('social', true) }}!</h1>{{ slot.default }}",
    "demo": '<a class="btn" href="/demo">Book a 20-minute demo</a>',  # static: most variants are plain HTML
    "app": '<a class="btn" href="/app">Get the app</a>',
    "campaign": "<p>{{ request.utm.campaign }}: trusted by 2,000 teams</p>",
    "dach": "<p>Vertraut von 400 Teams in DACH.</p>",
    "social_en": '<aside><h3>Seen us on LinkedIn?</h3><a href="/blog/launch">Read the launch post</a></aside>',
    "loyal": "<aside><h3>Thanks for a month with us</h3></aside>",
    "regular": "<p>You have been here {{ visitor.visits }} times: ask for a discount.</p>",
}


def bench_config(sink_path: str, delivery: dict[str, Any] | None = None) -> dict[str, Any]:
    """Real rules: segments over request and profile fields; some slots fire, some keep the default.

    ``delivery`` defaults to a memory queue big enough that a run never needs the
    spool, and the largest batches: the worker wakes by backlog only after three
    (30,000 records), more than a round of bench/overhead.py queues, so it writes
    between rounds and on its timer and the timed batches hold the request path
    alone. bench/throughput.py passes ``{}``, the defaults a site runs with.
    """
    def rule(condition: Any, variant: str) -> dict[str, Any]:
        return {"if": condition, "variant": variant, "template": _TEMPLATES[variant]}

    return {
        "secret_keys": ["bench-old-secret-key-000000", "bench-new-secret-key-111111"],
        "sink": f"jsonl:{sink_path}",
        "delivery": ({"queue_size": 2_000_000, "batch_size": 10_000, "flush_interval_s": 0.5,
                      "shutdown_timeout_s": 60}
                     if delivery is None else delivery),
        "segments": {
            "from_social": {"any": [{"utm_medium": {"in": ["social", "paid_social"]}},
                                    {"referrer_host": {"in": ["www.linkedin.com", "t.co"]}}]},
            "pricing_interest": {"viewed": {"path": "/pricing"}},
            "dach": {"country": {"in": ["DE", "AT", "CH"]}},
            "customer": {"goal_completed": "signup"},
        },
        "goals": {"signup": {"path": "/thanks", "value": 50}},
        "slots": {
            "hero": {"rules": [rule("customer", "customer"), rule("pricing_interest", "pricing"),
                               rule("from_social", "social")]},
            "cta": {"rules": [rule({"all": ["pricing_interest", {"device": "desktop"}]}, "demo"),
                              rule({"device": "mobile"}, "app")]},
            "proof": {"rules": [rule({"utm_campaign": {"matches": "^q[1-4]-"}}, "campaign"),
                                rule("dach", "dach")]},
            "sidebar": {"rules": [rule({"all": ["from_social", {"language": "en"}]}, "social_en"),
                                  rule({"days_since_first_visit": {"gte": 30}}, "loyal")]},
            "footer": {"rules": [rule("dach", "dach"), rule({"visits": {"gte": 5}}, "regular")]},
        },
    }


# Which slots each visitor should see filled; checked before timing so we never time a broken path.
EXPECTED_VARIANTS = {
    "anonymous": {"hero": "social", "proof": "campaign", "sidebar": "social_en"},
    "returning": {"hero": "pricing", "cta": "demo"},
}

# ---------------------------------------------------------------- the visitors

_BROWSER = [
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                   "Chrome/126.0.0.0 Safari/537.36"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("accept-language", "en-GB,en;q=0.9,de;q=0.7"),
    ("accept-encoding", "gzip, deflate, br"),
    ("sec-fetch-site", "cross-site"),
    ("sec-fetch-mode", "navigate"),
]
CONSENT_COOKIE = "pmw_consent=analytics=1&personalization=1&advertising=0"
THIRD_PARTY_COOKIES = "_ga=GA1.1.1234567890.1700000000; theme=dark"


@dataclass(frozen=True)
class Visitor:
    name: str
    query: str
    headers: tuple[tuple[str, str], ...]


ANONYMOUS = Visitor(
    "anonymous",
    "utm_source=linkedin&utm_medium=social&utm_campaign=q3-launch",
    (("host", HOST), *_BROWSER, ("referer", "https://www.linkedin.com/"), ("cookie", THIRD_PARTY_COOKIES)),
)


def returning_visitor(id_cookie: str) -> Visitor:
    """Consented, with the signed id cookie that an earlier request set."""
    cookie = f"{THIRD_PARTY_COOKIES}; {CONSENT_COOKIE}; {id_cookie}"
    headers = [(n, "same-origin" if n == "sec-fetch-site" else v) for n, v in _BROWSER]
    return Visitor("returning", "", (("host", HOST), *headers, ("referer", f"https://{HOST}/pricing"),
                                     ("cf-ipcountry", "FR"), ("cookie", cookie)))


class _Discard:
    def put(self, record: Any) -> bool:
        return True

    def put_many(self, records: list[Any]) -> bool:  # a page's records, as the middleware queues them
        return True

    def close(self, timeout: float | None = None) -> None:
        pass


def returning_from_another_worker() -> Visitor:
    """The consenting returning visitor, with the id cookie a first request to /pricing got from
    another worker of the site: the server verifies it in full (HMAC), as a site with several
    workers, or a busy one, does for most returning visitors. A signer remembers the last 1,024
    tokens it issued and skips the HMAC for those, so a benchmark priming the very process it
    then loads would time a check that production rarely gets to skip."""
    from personalize_mw.config import load_config
    from personalize_mw.core.context import RequestContext
    from personalize_mw.core.personalizer import Personalizer

    other = Personalizer(load_config(bench_config("/dev/null")), queue=_Discard())  # type: ignore[arg-type]
    headers = {n: v for n, v in returning_visitor("").headers if n != "cookie"}
    headers["cookie"] = f"{THIRD_PARTY_COOKIES}; {CONSENT_COOKIE}"
    outcome = other.visit(RequestContext("GET", "http", HOST, "/pricing", "", headers), None, time.time())
    [cookie] = [c for c in outcome.cookies if c.name == other.codec.cookie_name]
    return returning_visitor(f"{cookie.name}={cookie.value}")


def asgi_scope(visitor: Visitor, path: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": visitor.query.encode(), "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000),
        "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in visitor.headers],
    }


def wsgi_environ(visitor: Visitor, path: str) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": visitor.query,
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": io.StringIO(), "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for name, value in visitor.headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


# ---------------------------------------------------------------- the apps

PATHS = {"5-slot page": "/", "no markers": "/plain", "JSON": "/api/plans"}


def starlette_app() -> Starlette:
    async def page(request: Request) -> Response:
        return Response(PAGE, media_type="text/html")

    async def plain(request: Request) -> Response:
        return Response(PLAIN_PAGE, media_type="text/html")

    async def plans(request: Request) -> Response:
        return Response(JSON_BODY, media_type="application/json")

    return Starlette(routes=[Route("/", page), Route("/pricing", page), Route("/plain", plain),
                             Route("/api/plans", plans)])


def flask_app(wrap: Callable[[Any], Any] | None = None) -> Flask:
    app = Flask("bench")

    @app.get("/")
    @app.get("/pricing")
    def page() -> FlaskResponse:
        return FlaskResponse(PAGE, content_type="text/html; charset=utf-8")

    @app.get("/plain")
    def plain() -> FlaskResponse:
        return FlaskResponse(PLAIN_PAGE, content_type="text/html; charset=utf-8")

    @app.get("/api/plans")
    def plans() -> FlaskResponse:
        return FlaskResponse(JSON_BODY, content_type="application/json")

    if wrap is not None:
        app.wsgi_app = wrap(app.wsgi_app)  # the documented one-line integration
    return app


# ---------------------------------------------------------------- the anchor: a naive rewrite

# What a site could write in an afternoon: buffer every HTML body, re.sub the same
# five blocks with fixed content, fix Content-Length. No visitor, no records, no
# cookie: the budget everything personalize_mw does on top has to fit in.
_NAIVE_BLOCK = re.compile(rb"(<!-- personalize:([a-z]+) -->).*?(<!-- /personalize:\2 -->)", re.DOTALL)
_NAIVE_FILL = {name.encode(): _TEMPLATES[variant].encode() for name, variant in
               (("hero", "social"), ("cta", "demo"), ("proof", "dach"), ("sidebar", "social_en"),
                ("footer", "dach"))}


def naive_fill(body: bytes) -> bytes:
    return _NAIVE_BLOCK.sub(lambda m: m.group(1) + _NAIVE_FILL[m.group(2)] + m.group(3), body)


def naive_asgi(app: Any) -> Any:
    """A pure ASGI middleware that buffers text/html and rewrites it with naive_fill."""
    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def rewrite(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if any(n == b"content-type" and v.startswith(b"text/html") for n, v in message["headers"]):
                    held["start"] = message
                    return
                return await send(message)
            if "start" not in held:
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = naive_fill(b"".join(chunks))
            headers = [(n, v) for n, v in held["start"]["headers"] if n != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**held["start"], "headers": headers})
            await send({"type": "http.response.body", "body": body})
        await app(scope, receive, rewrite)
    return middleware


def naive_wsgi(app: Any) -> Any:
    """The same for WSGI: buffer text/html, rewrite, fix Content-Length."""
    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        held: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if any(n.lower() == "content-type" and v.startswith("text/html") for n, v in headers):
                held["head"] = (status, headers)
                return lambda data: None
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        result = app(environ, capture)
        if "head" not in held:
            return result
        try:
            body = naive_fill(b"".join(result))
        finally:
            getattr(result, "close", lambda: None)()
        status, headers = held["head"]
        headers = [(n, v) for n, v in headers if n.lower() != "content-length"]
        start_response(status, headers + [("Content-Length", str(len(body)))])
        return [body]
    return middleware
