"""``type: http``: a CRM or marketing-automation endpoint, asked off the request path.

    enrichment:
      crm:
        type: http
        url: https://crm.example.com/api/people/{user}      # or .../accounts/{account}
        headers: {Authorization: "Bearer ${CRM_TOKEN}"}
        timeout_ms: 500

A page reads only what is cached. A miss (a visitor the cache does not know)
schedules a fetch on this enricher's own thread and the page goes on without
the fields; ``identify()`` schedules one at once, so the page after a login
usually finds them. The endpoint answers JSON: an object of fields (scalars
are kept, strings cut to 256 characters; ``fields:`` keeps only the ones named),
404 for somebody it does not know. Answers are kept ``ttl_s`` (a 404 ``miss_ttl_s``)
in a bounded cachetools cache per process. After ``failures`` failures in a row
(an error, a timeout, a refused connection) the circuit opens for ``open_s``:
nothing is asked until then, then one fetch tries again. A slow or dead CRM
therefore costs a page nothing: it never waits on this thread.

``{user}`` is the user id as ``identify()`` hashes it (HMAC-SHA256, 64 hex
characters, whatever ``identity.hash`` says): the CRM is asked by a key that
names nobody without the site's secret. The enricher is ``personal``: it is
asked only for visitors with personalization consent.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..config import check_headers
from ..throttle import Throttle
from .protocol import EnricherSpec, Fields

if TYPE_CHECKING:
    from ..core.context import RequestContext
    from ..core.visitor import Profile

log = logging.getLogger("personalize_mw")

KEYS = ("user", "account")
MAX_TEXT = 256
MAX_FIELDS = 64


class HttpOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    headers: dict[str, str] = {}
    timeout_ms: float = Field(500.0, gt=0, le=10_000)
    ttl_s: float = Field(600.0, gt=0, le=7 * 86400)
    miss_ttl_s: float = Field(60.0, gt=0, le=7 * 86400)
    max_entries: int = Field(10_000, ge=1, le=1_000_000)
    fields: list[str] | None = None
    failures: int = Field(5, ge=1, le=1000)  # in a row, before the circuit opens
    open_s: float = Field(30.0, gt=0, le=3600)
    queue_size: int = Field(1000, ge=1, le=100_000)  # fetches waiting; more are dropped (asked again later)

    @field_validator("url")
    @classmethod
    def _template(cls, url: str) -> str:
        found = [key for key in KEYS if "{" + key + "}" in url]
        if len(found) != 1:
            raise ValueError("the url needs exactly one of {user} or {account}")
        try:
            parsed = httpx.URL(url.replace("{" + found[0] + "}", "x"))
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError("the url must be http:// or https:// with a host")
        return url

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return check_headers(headers)


class HttpEnricher:
    personal = True

    def __init__(self, spec: EnricherSpec) -> None:
        options = spec.parse(HttpOptions)
        self.name = spec.name
        self.options = options
        self.key = next(key for key in KEYS if "{" + key + "}" in options.url)
        self._template = options.url
        self._keep = frozenset(options.fields) if options.fields is not None else None
        self.known_fields = self._keep  # what `record:` may name; None: whatever the CRM answers
        self._found: TTLCache[str, Fields] = TTLCache(options.max_entries, options.ttl_s)
        self._unknown: TTLCache[str, bool] = TTLCache(options.max_entries, options.miss_ttl_s)
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        self._pending: set[str] = set()
        self._failures = 0
        self._open_until = 0.0
        self._throttle = Throttle()
        self.counts = {"scheduled": 0, "fetched": 0, "unknown": 0, "failed": 0, "dropped": 0, "skipped_open": 0}
        self._pid = -1  # the thread and client belong to one process: a forked worker starts its own
        self._queue: queue.Queue[str | None] = queue.Queue(options.queue_size)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ request path

    def lookup(self, ctx: RequestContext, profile: Profile | None) -> Fields | None:
        # profile.user, or the account the b2b side keeps on the profile; None without a profile
        key = getattr(profile, self.key, None)
        if not key or not isinstance(key, str):
            return None
        with self._lock:
            try:
                return self._found[key]  # not .get(): that checks the expiry twice, and costs 2 µs
            except KeyError:
                if key in self._unknown:
                    return None
        self.schedule(key)
        return None

    def identified(self, user: str, account: str | None = None) -> None:
        key = user if self.key == "user" else account
        if key:
            with self._lock:
                known = key in self._found or key in self._unknown
            if not known:
                self.schedule(key)

    def schedule(self, key: str) -> None:
        """Fetch ``key`` in the background, once, unless the circuit is open or the queue full."""
        if self._open_until and time.monotonic() < self._open_until:
            self.counts["skipped_open"] += 1
            return
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._start()
        try:
            self._queue.put_nowait(key)
            self.counts["scheduled"] += 1
        except queue.Full:
            with self._lock:
                self._pending.discard(key)
            self.counts["dropped"] += 1

    # ------------------------------------------------------------ the fetching thread

    def _start(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            if self._pid != -1:  # forked: the parent's thread did not come along
                self._queue = queue.Queue(self.options.queue_size)
            self._thread = threading.Thread(target=self._run, name=f"personalize_mw-enrich-{self.name}",
                                            daemon=True)
            self._thread.start()
            self._pid = pid

    def _run(self) -> None:
        timeout = self.options.timeout_ms / 1000.0
        with httpx.Client(timeout=httpx.Timeout(timeout), headers=self.options.headers,
                          follow_redirects=False) as client:
            while True:
                key = self._queue.get()
                if key is None:
                    return
                try:
                    if self._open_until and time.monotonic() < self._open_until:
                        self.counts["skipped_open"] += 1  # queued before the circuit opened
                    else:
                        self._fetch(client, key)
                finally:
                    with self._lock:
                        self._pending.discard(key)

    def _fetch(self, client: httpx.Client, key: str) -> None:
        url = self._template.replace("{" + self.key + "}", quote(key, safe=""))
        try:
            response = client.get(url)
            if response.status_code in (404, 410):
                with self._lock:
                    self._unknown[key] = True
                self._succeeded("unknown")
                return
            response.raise_for_status()
            fields = self._fields(response.json())
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: not JSON, or not an object
            self._failed(exc)
            return
        with self._lock:
            self._found[key] = fields
        self._succeeded("fetched")

    def _fields(self, data: Any) -> Fields:
        if not isinstance(data, dict):
            raise ValueError("the answer is not a JSON object")
        fields: dict[str, Any] = {}
        for name, value in data.items():
            if len(fields) >= MAX_FIELDS:
                break
            if not isinstance(name, str) or (self._keep is not None and name not in self._keep):
                continue
            if isinstance(value, str):
                fields[name] = value[:MAX_TEXT]
            elif value is None or isinstance(value, (bool, int, float)):
                fields[name] = value
        return fields

    def _succeeded(self, count: str) -> None:
        self.counts[count] += 1
        self._failures = 0
        self._open_until = 0.0

    def _failed(self, exc: Exception) -> None:
        self.counts["failed"] += 1
        self._failures += 1
        opened = self._failures >= self.options.failures
        if opened:
            self._open_until = time.monotonic() + self.options.open_s
        held = self._throttle.ready()
        if held is not None:
            # The type and status only: the URL holds a person's key, the body is the CRM's.
            what = type(exc).__name__
            if isinstance(exc, httpx.HTTPStatusError):
                what += f" {exc.response.status_code}"
            log.warning("personalize_mw: enricher %s: fetch failed (%s)%s; %d more since the last report",
                        self.name, what, f", circuit open for {self.options.open_s:g} s" if opened else "", held)

    def close(self) -> None:
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            try:
                self._queue.put(None, timeout=1)
            except queue.Full:
                return
            thread.join(self.options.timeout_ms / 1000.0 + 1)
