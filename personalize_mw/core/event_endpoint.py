"""``POST /_personalize/event``: events from the page's own scripts.

    fetch("/_personalize/event", {method: "POST", headers: {"content-type": "application/json"},
          body: JSON.stringify({name: "video_played", value: 30, props: {id: "intro"}})})

Same-origin only (another site cannot inject events), a small body, a fixed
schema (``name``; optional ``value``, ``props``, ``path``), a bounded value, and
rate limits per /24 (/48) network for every client and per visitor id on top
(minting ids buys no budget). A name that is
a configured goal records a conversion only if the goal allows client-side
conversions (``client: true``), with the goal's own value unless its
``max_value`` lets the page report one; otherwise it is recorded as a plain
event, completes nothing and teaches no strategy. Answers 202 (queued),
400, 403, 405, 413 or 429; the 202 may refresh the id cookie, as any visit does.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from .consent_endpoint import EndpointResponse, same_origin
from .context import RequestContext
from .events import Requested, check_name, check_props, check_text, check_value, value_problem
from .ip import truncate_ip
from .personalizer import Personalizer
from .rate_limit import RateLimiter
from .request_state import RequestState

_KEYS = frozenset({"name", "value", "props", "path"})
_MAX_PATH = 200


def _answer(status: int, message: str = "", headers: list[tuple[str, str]] | None = None) -> EndpointResponse:
    base = [("cache-control", "no-store")]
    if message:
        base.append(("content-type", "text/plain; charset=utf-8"))
    return EndpointResponse(status, base + (headers or []), message.encode())


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number here")  # json accepts NaN and Infinity by default


def parse_event(body: bytes) -> tuple[str, float | None, dict[str, Any] | None, str | None]:
    """(name, value, props, path) from a JSON body; ValueError says what is wrong."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("too deeply nested") from None
    if not isinstance(data, dict):
        raise ValueError("send a JSON object")
    unknown = set(data) - _KEYS
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
    path = data.get("path")
    if path is not None and not (isinstance(path, str) and path.startswith("/")):
        raise ValueError("path is this site's path, starting with /")
    if path is not None:
        check_text(path, 2048)
    return check_name(data.get("name")), check_value(data.get("value")), check_props(data.get("props")), path


class EventEndpoint:
    """One per middleware instance: it holds the rate-limit counters."""

    def __init__(self, core: Personalizer) -> None:
        config = core.config.events
        self.core = core
        self.path = config.endpoint
        self.max_body = config.max_body_bytes
        self.per_visitor = RateLimiter(config.rate_per_minute)
        self.per_network = RateLimiter(config.anonymous_rate_per_minute)
        self.max_value = config.max_value

    def _allowed(self, state: RequestState) -> bool:
        # Per network for everyone: a client minting ids must not get a fresh budget per id.
        # A coarse, in-memory-only key; NAT'd offices share it, hence its higher limit.
        if not self.per_network.allow(truncate_ip(state.context().client) or "unknown"):
            return False
        profile = state.visitor().profile
        return profile is None or self.per_visitor.allow(profile.visitor_id)

    def _value_problem(self, name: str, value: float | None) -> str | None:
        """Why a client's value is refused, if it is: bounded by the goal, or by events.max_value."""
        goal = self.core.config.goals.get(name)
        return value_problem(name, value, goal.max_value if goal is not None and goal.client else None,
                             self.max_value)

    def handle(self, ctx: RequestContext, body: bytes) -> EndpointResponse:
        if ctx.method != "POST":
            return _answer(405, "POST events here.\n", [("allow", "POST")])
        if not same_origin(ctx):
            return _answer(403, "Events can only be sent from this site.\n")
        if len(body) > self.max_body:
            return _answer(413, f"Events are at most {self.max_body} bytes.\n")
        core = self.core
        state = RequestState(core, ctx, lambda source, _header: source)
        if not self._allowed(state):
            return _answer(429, "Too many events; slow down.\n", [("retry-after", "60")])
        content_type = ctx.headers.get("content-type", "").lower()
        # text/plain: what navigator.sendBeacon sends for a string body.
        if not content_type.startswith(("application/json", "text/plain")):
            return _answer(400, "Send JSON: {\"name\": \"...\", \"value\": 1, \"props\": {}}.\n")
        try:
            name, value, props, path = parse_event(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _answer(400, f"Invalid event: {exc}.\n")
        problem = self._value_problem(name, value)
        if problem is not None:
            return _answer(400, f"Invalid event: {problem}.\n")
        state.page_path = (path or _referer_path(ctx) or ctx.path)[:_MAX_PATH]
        now = core.clock()
        state.add(Requested("track", now, name=name, value=value, props=props, client=True))
        outcome = core.visit_safely(state.context, None, is_page=False, state=state)
        core.commit(outcome, rewritten=False)
        response = _answer(202)
        response.cookies = outcome.cookies
        return response


def _referer_path(ctx: RequestContext) -> str | None:
    referer = ctx.headers.get("referer")
    if not referer:
        return None
    try:
        return urlsplit(referer).path or None
    except ValueError:
        return None
