"""``/_personalize/privacy``: a visitor downloads (GET) or erases (POST) what is held under their own id.

    <a href="/_personalize/privacy">Download what this site holds about this browser</a>
    <form method="post" action="/_personalize/privacy">
      <input type="hidden" name="next" value="/privacy/erased">
      <button name="action" value="erase">Erase it</button>
    </form>

Whose data: the id in this browser's verified id cookie, never an id from a
parameter (which would let anyone read or erase anyone's records); without
one (no cookie, no personalization consent, tampered, expired) the answer is
404 and nothing is read. The id alone: ``identify`` links are not followed,
because a cookie proves a browser, not a person, and on a shared browser they
lead to another user's other devices. The work is the CLI's own
``export_person`` / ``forget_person`` (privacy/requests.py), which reads every
sink that holds records: so each id and each network has an hourly budget,
one request runs at a time per process (503 while busy), and the ASGI and
async Django adapters run it off the event loop (``Endpoint.blocking``).

POST is same-origin only, like the consent endpoint: another site cannot
erase a visitor's data. A complete erasure expires the id cookie (the next
page view, with consent, starts a new id); an incomplete one (a sink down,
records still spooled) answers 503 and keeps it, so the visitor can retry.
Sink names, paths and errors stay in the log, never in an answer.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any
from urllib.parse import parse_qsl

from ..privacy.requests import export_person, forget_person
from .consent_endpoint import MAX_BODY, EndpointResponse, back_to, same_origin
from .context import RequestContext
from .cookies import CookieSpec
from .ip import truncate_ip
from .personalizer import Personalizer
from .rate_limit import RateLimiter

log = logging.getLogger("personalize_mw")

_HOUR = 3600.0
_FLUSH_S = 2.0  # this process's queued records reach the sinks first: the last page view is in the answer
_RETRY_S = "300"


def _json(status: int, data: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> EndpointResponse:
    base = [("content-type", "application/json"), ("cache-control", "no-store"),
            ("x-content-type-options", "nosniff")]
    body = json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    return EndpointResponse(status, base + (headers or []), body)


def _error(status: int, error: str, message: str, headers: list[tuple[str, str]] | None = None) -> EndpointResponse:
    return _json(status, {"error": error, "message": message}, headers)


def _action(body: bytes, content_type: str) -> tuple[str | None, dict[str, str]]:
    """(action, form fields) from a form or JSON body; (None, {}) if it cannot be read."""
    try:
        if content_type.startswith("application/json"):
            data = json.loads(body)
            action = data.get("action") if isinstance(data, dict) else None
            return (action if isinstance(action, str) else None), {}
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            return form.get("action"), form
    except (ValueError, UnicodeDecodeError, RecursionError):
        pass
    return None, {}


def public_names(export: dict[str, Any]) -> dict[str, Any]:
    """The export with each sink named by its kind ("jsonl", "sqlite 2"), not by its URL.

    A sink's URL carries the server's paths and hosts, and a read error may
    carry more: the visitor is told which kinds of store hold what, and that
    one could not be read, no more.
    """
    names: dict[str, str] = {}
    taken: dict[str, int] = {}
    labels = [*export["records"], *export["unreadable"], *export["forwarded_to"]]
    for label in labels:
        if label not in names:
            kind = label.partition(":")[0] if ":" in label else label
            taken[kind] = taken.get(kind, 0) + 1
            names[label] = kind if taken[kind] == 1 else f"{kind} {taken[kind]}"
    return {**export,
            "records": {names[label]: records for label, records in export["records"].items()},
            "unreadable": {names[label]: "could not be read now: this download is incomplete; try again later"
                           for label in export["unreadable"]},
            "forwarded_to": [names[label] for label in export["forwarded_to"]]}


class PrivacyEndpoint:
    """One per middleware instance: it holds the rate-limit counters and the one-at-a-time lock."""

    def __init__(self, core: Personalizer) -> None:
        config = core.config.privacy
        self.core = core
        self.per_visitor = RateLimiter(config.rate_per_hour, window_s=_HOUR)
        self.per_network = RateLimiter(config.network_rate_per_hour, window_s=_HOUR)
        self._busy = threading.Lock()

    def handle(self, ctx: RequestContext, body: bytes) -> EndpointResponse:
        if ctx.method not in ("GET", "POST"):
            return _error(405, "method", "GET downloads what is held about this browser; "
                          "POST action=erase erases it.", [("allow", "GET, POST")])
        form: dict[str, str] = {}
        if ctx.method == "POST":
            if not same_origin(ctx):
                return _error(403, "cross_site", "Erasure can only be asked for from this site.")
            if len(body) > MAX_BODY:
                return _error(413, "too_large", "Privacy request too large.")
            action, form = _action(body, ctx.headers.get("content-type", "").lower())
            if action != "erase":
                return _error(400, "action", 'Send a form with action=erase, or JSON {"action": "erase"}.')
        profile = self.core.read_visitor(ctx).profile
        if profile is None:
            return _error(404, "no_visitor_id",
                          "This browser carries no visitor id of this site (none was set, consent was not "
                          "given or was withdrawn, or it expired), so there is nothing it can download or "
                          "erase here. For the records of an account, ask the site owner.")
        visitor_id = profile.visitor_id
        if not (self.per_network.allow(truncate_ip(ctx.client) or "unknown")
                and self.per_visitor.allow(visitor_id)):
            return _error(429, "rate_limited", "Too many privacy requests; try again in an hour.",
                          [("retry-after", str(int(_HOUR)))])
        if not self._busy.acquire(blocking=False):
            return _error(503, "busy", "Another privacy request is running; try again in a minute.",
                          [("retry-after", "60")])
        try:
            self.core.queue.flush(_FLUSH_S)
            if ctx.method == "GET":
                return self._download(visitor_id)
            return self._erase(ctx, visitor_id, form)
        except Exception:  # a sink's own failure is in the report; this is ours, and stays in the log
            log.exception("personalize_mw: a visitor's privacy request failed")
            return _error(500, "internal", "The request could not be completed; try again later.")
        finally:
            self._busy.release()

    def _download(self, visitor_id: str) -> EndpointResponse:
        export = export_person(self.core.config, visitor_id, self.core.clock(), follow_links=False)
        for label, error in export["unreadable"].items():
            log.error("personalize_mw: a visitor's download could not read %s: %r", label, error)
        return _json(200, public_names(export),
                     [("content-disposition", 'attachment; filename="personal-data.json"')])

    def _erase(self, ctx: RequestContext, visitor_id: str, form: dict[str, str]) -> EndpointResponse:
        report = forget_person(self.core.config, visitor_id, self.core.clock(), follow_links=False)
        deleted = sum(report.deleted.values())
        for label, error in report.failed.items():
            log.error("personalize_mw: a visitor's erasure could not reach %s: %r", label, error)
        if not report.complete:
            if report.still_spooled:
                log.warning("personalize_mw: a visitor's erasure left %d records in the spool", report.still_spooled)
            return _error(503, "incomplete", f"{deleted} records were erased, but not all of them: part of "
                          "this site's storage cannot be reached now. Your id is kept so that you can try again "
                          "later.", [("retry-after", _RETRY_S)])
        log.info("personalize_mw: a visitor erased what was held under their id: %d records", deleted)
        secure = self.core.cookie_secure(ctx)
        expired = [CookieSpec(self.core.codec.name_for(secure), "", 0, secure=secure)]
        if form:  # a plain HTML form: back to the page it names (or came from), as the consent endpoint does
            response = EndpointResponse(303, [("cache-control", "no-store"), ("location", back_to(ctx, form))])
        else:
            response = _json(200, {"request": "erase", "complete": True, "deleted": deleted,
                                   "sinks_told_downstream": len(report.suppressed)})
        response.cookies = expired
        return response
