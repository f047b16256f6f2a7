"""The sans-I/O core shared by the ASGI, WSGI and Django adapters.

An adapter asks :meth:`Personalizer.plan` what to do with a response from its
status and headers, gives :meth:`Personalizer.visit` the request context and
(for pages) the buffered body, applies the returned :class:`Outcome` to its own
header type, sends, and only then calls :meth:`Personalizer.commit`, so that an
exposure is recorded only for a variant that was actually sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from cachetools import TTLCache
from markupsafe import Markup

from ..config import Config, Goal
from ..render import NO_TRAITS, RenderError, TraitMissing, Traits
from ..rules import conditions
from ..rules.conditions import merged_tests, request_key
from ..rules.engine import compiled_slots
from ..rules.protocol import Decision
from ..rules.slot import SlotDecider
from ..touchpoints.queue import TouchpointPipeline
from ..touchpoints.record import LazyRecord, exposure, from_template, new_record
from . import compiled
from .block_memo import VISITOR_FIELDS, BlockMemo, default_fits
from .consent import DENIED, Consent, ConsentReader
from .context import ChannelClassifier, RequestContext
from .cookies import UNREADABLE, CookieSpec, mentions, parse_cookie_header
from .events import Requested
from .identity import UserIds
from .ip import truncate_ip
from .markers import MarkerError, blocks_of, find_blocks, has_markers
from .page_memo import Filled, Page, PageKey, PageMemo, RenderKeys
from .preview import COOKIE as PREVIEW_COOKIE
from .preview import PARAM as PREVIEW_PARAM
from .preview import Preview, PreviewCodec
from .visitor import Profile, VisitorCodec, new_id

if TYPE_CHECKING:
    from .request_state import ContextBuilder, RequestState

log = logging.getLogger("personalize_mw")

_MAX_PATH = 200  # characters of a path kept in the profile and in records
_ASCII_COMPATIBLE = frozenset({
    "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin-1", "latin1", "windows-1252",
    "cp1252", "iso-8859-15", "iso-8859-2", "windows-1250", "windows-1251", "koi8-r",
    "shift_jis", "euc-jp", "euc-kr", "gb2312", "gbk", "gb18030", "big5",
})


STATS_PATH = "/_personalize/stats"
# Every field of a record in schema order, empty: each request's template is a copy of it.
_EMPTY_RECORD = new_record("", 0.0, visitor=None, session=None, path="", referrer_host=None, channel="",
                           utm={}, consent={})
# Queued records off the garbage collector's list (see _scan.c); without it they stay on, a few µs a page.
untrack_records: Callable[[list[dict[str, Any]]], None] = (
    compiled.scan.untrack_records if compiled.scan is not None else lambda records: None)
_GOAL_STATUSES = frozenset({200, 201, 202, 203, 301, 302, 303, 307, 308})


class Plan(Enum):
    PASS = 0  # not ours: forward byte for byte, unbuffered
    PAGE = 1  # an HTML page: buffer (bounded), fill slots, record a pageview
    GOAL = 2  # a goal reached by a non-page response: headers only, record a conversion
    HEAD = 3  # HEAD of a page on a site with slots: GET's cache headers, nothing recorded


@dataclass(slots=True)
class Outcome:
    """What to change in the response, and what to record once it is sent."""

    body: bytes | None = None  # the rewritten body, or None to send the original
    cookies: list[CookieSpec] = field(default_factory=list)
    private: bool = False  # per-visitor: Cache-Control private, Vary: Cookie
    varies: bool = False  # the page has configured slots: the app's validators no longer hold
    records: list[dict[str, Any]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)  # extra response headers (debug)


NOTHING = Outcome()
# HEAD carries the headers GET would (RFC 9110 9.3.2) without a body to look into:
# private, Vary: Cookie and no validators, as on a page with slots. Never recorded.
HEAD_OUTCOME = Outcome(private=True, varies=True)


@dataclass(slots=True)
class SeenVisitor:
    """The visitor as the request shows them: read once, wherever a request needs it."""

    cookies: dict[str, str]
    consent: Consent
    secure: bool
    cookie_name: str
    _codec: VisitorCodec
    _profile: Profile | None | Literal[False] = False  # False: not read yet

    @property
    def profile(self) -> Profile | None:
        """The verified profile from the id cookie; only with personalization consent."""
        if self._profile is False:
            self._profile = (self._codec.load(self.cookies.get(self.cookie_name))
                             if self.consent.personalization else None)
        return self._profile


_UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_charsets: dict[str, str | None] = {}  # content type -> page_charset(); a handful per site


def page_charset(content_type: str) -> str | None:
    """The charset of an HTML page we may rewrite ('utf-8' when none is given), else None."""
    found: str | None | Literal[False] = _charsets.get(content_type, False)
    if found is not False:
        return found
    charset: str | None = None
    mime, _, params = content_type.partition(";")
    if mime.strip().lower() == "text/html":
        charset = "utf-8"
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                value = value.strip().strip('"').lower()
                charset = value if value in _ASCII_COMPATIBLE else None
    if len(_charsets) < 256:  # bounded: the header is the app's, not the visitor's, but still
        _charsets[content_type] = charset
    return charset


DEBUG_HEADER = "x-personalize-debug"
_DEBUG_MAX = 4000  # proxies refuse headers of 8 KB and more


def debug_value(entries: list[str]) -> str:
    """One header line: printable ASCII only (names and ids come from the YAML), bounded."""
    value = "; ".join(entries)
    value = "".join(c if " " <= c <= "~" else "?" for c in value)
    return value if len(value) <= _DEBUG_MAX else value[: _DEBUG_MAX - 3] + "..."


def _showed_default(exposure: dict[str, Any]) -> bool:
    """A holdout (or unassigned) exposure: the default it records is what the original body showed."""
    return exposure["arm"] == "holdout" or (exposure["arm"] == "unenrolled" and exposure["variant"] is None)


class Personalizer:
    def __init__(self, config: Config, queue: TouchpointPipeline | None = None, *,
                 clock: Callable[[], float] = time.time, new_id: Callable[[], str] = new_id) -> None:
        self.config = config
        self.clock = clock  # injected by the simulation: same seed, same records
        self.new_id = new_id
        compiled = compiled_slots(config)
        self.slots: dict[str, SlotDecider] = compiled.slots
        self.renderer = compiled.renderer
        self.block_memo = BlockMemo(self.renderer)
        self.page_memo = PageMemo()
        self.enrichment = compiled.enrichment  # None without `enrichment:`: nothing on the request path
        # Only when an enricher's `record:` names fields: else no page pays for looking.
        self.recorded_enriched = compiled.enrichment if compiled.enrichment and compiled.enrichment.recorded else None
        self.enabled = config.enabled
        self.buffer_limit = config.buffer_limit
        self.consent_reader = ConsentReader(config.consent)
        self.consent_path = config.consent.endpoint
        self.stats_path = STATS_PATH if config.debug else None  # answered by core/stats_endpoint.py
        cookie = config.cookie
        self.cookie_max_age = cookie.max_age_days * 86400
        self.codec = VisitorCodec(config.secret_keys, cookie.name, self.cookie_max_age, clock=clock)
        # A Cookie header naming any cookie consent is read from, or ours: a substring is enough to look closer.
        ours = {*self.consent_reader.cookie_names, cookie.name, PREVIEW_COOKIE}
        self._our_cookies = tuple(sorted(ours))  # the only cookies a request is read for (cookies.mentions)
        self.previews = PreviewCodec(config.secret_keys)
        self.debug = config.debug
        self.secure_setting = cookie.secure
        self.max_paths = cookie.max_paths
        self.session_timeout = cookie.session_timeout_minutes * 60
        self.channels = ChannelClassifier(config.channels.mediums, config.channels.sources,
                                          config.channels.referrers)
        self.country_header = config.country_header.lower()
        self.keep_ip = config.ip == "truncate"
        self.user_ids = UserIds.of(config)
        self.recorded_traits = tuple(config.merge_fields.record)  # merge fields records may carry
        self._goal_paths = {g.path: (n, g.value) for n, g in config.goals.items() if g.path}
        self._goal_prefixes = [(g.path_prefix, n, g.value) for n, g in config.goals.items() if g.path_prefix]
        self._has_goals = bool(self._goal_paths or self._goal_prefixes)
        self._warned_paths: TTLCache[str, bool] = TTLCache(maxsize=1024, ttl=3600)
        self._warned_lock = threading.Lock()  # cachetools caches are not thread-safe
        # The records' way out: put() on the request path, one worker per sink behind it.
        self.queue = queue if queue is not None else TouchpointPipeline.from_config(config)
        # Learning strategies (crowd, bandit) watch page views and sent records; their
        # observers only buffer increments for the state store's thread.
        strategies = [s for slot in self.slots.values() for s in slot.strategies]
        self._page_observers = [s.observe_page for s in strategies if hasattr(s, "observe_page")]
        self._record_observers = [s.observe_records for s in strategies if hasattr(s, "observe_records")]
        self._make_later = self._later_record  # one bound method for every deferred record, not one each

    # ------------------------------------------------------------ planning

    def goal_for(self, path: str) -> tuple[str, float | None] | None:
        found = self._goal_paths.get(path)
        if found is not None:
            return found
        for prefix, name, value in self._goal_prefixes:
            if path.startswith(prefix):
                return name, value
        return None

    def plan(self, method: str, path: str, status: int, content_type: str | None,
             content_encoding: str | None, state: RequestState | None = None) -> Plan:
        """Decide from the response head alone; the body is buffered only for PAGE.

        A goal counts on a complete answer (2xx but 204/206, or a redirect), not
        on a probe (HEAD, OPTIONS), a range request or a revalidation (304).
        """
        if status == 200 and content_type is not None and not content_encoding:
            charset = _charsets.get(content_type, False)  # page_charset()'s cache, read inline: every response asks
            if (charset if charset is not False else page_charset(content_type)) is not None:
                if method != "HEAD":
                    return Plan.PAGE
                if self.slots:
                    return Plan.HEAD
        if (self._has_goals and status in _GOAL_STATUSES and method not in ("HEAD", "OPTIONS")
                and (path in self._goal_paths or (self._goal_prefixes and self.goal_for(path)))):
            return Plan.GOAL
        if state is not None:
            if state.pending:  # the view called identify()/track(): headers only, like a goal
                return Plan.GOAL
            state.decided = True
        return Plan.PASS

    def cookie_secure(self, ctx: RequestContext) -> bool:
        return ctx.secure if self.secure_setting == "auto" else bool(self.secure_setting)

    # ------------------------------------------------------------ the visit

    def visit(self, ctx: RequestContext, body: bytes | None, now: float, is_page: bool = True,
              state: RequestState | None = None, charset: str = "utf-8", marked: bool | None = None) -> Outcome:
        """Identify, update the profile, fill the slots; no I/O, nothing recorded yet.

        ``state`` carries what view code asked for (identify, track): it becomes
        records with this visit's visitor, session and channel. ``marked`` is what
        :func:`has_markers` said of ``body``, if it was asked: False, no block is
        looked for; True, the blocks are, without asking it again.
        """
        seen = state.visitor(ctx) if state is not None else self.read_visitor(ctx)
        cookies, consent, secure, cookie_name = seen.cookies, seen.consent, seen.secure, seen.cookie_name
        outcome = Outcome()
        preview = self._preview(ctx, cookies, now, secure, outcome)
        goal = self.goal_for(ctx.path)
        utm = ctx.utm
        referrer_host = ctx.referrer_host
        channel = self.channels.classify(utm, referrer_host, ctx.host)

        profile: Profile | None = None
        repeat_goal = False
        if consent.personalization:
            profile = seen.profile
            if profile is None:
                profile = Profile(self.new_id(), first_seen=int(now))
            channel, repeat_goal = self._touch(profile, ctx, channel, referrer_host, now, is_page, goal)
            if state is not None and state.pending:
                self._remember_goals(profile, state.pending)
                if self.enrichment is not None and self.enrichment.wants_user:
                    self._remember_user(profile, state.pending)
            outcome.cookies.append(CookieSpec(cookie_name, self.codec.dump(profile, secure),
                                              self.cookie_max_age, secure=secure))
        elif cookie_name in cookies:
            # Consent withdrawn (or never given): the id cookie goes, now.
            outcome.cookies.append(CookieSpec(cookie_name, "", 0, secure=secure))

        identified = consent.analytics and profile is not None
        path = state.page_path if state is not None and state.page_path else ctx.path
        base = self._base(ctx, consent, profile if identified else None, path, channel)
        traits = state.traits if state is not None else None
        if traits and self.recorded_traits and consent.analytics:
            base["props"] = self._recorded(traits)
        if is_page:
            outcome.records.append(from_template(base, "pageview", now))
        if goal is not None and not repeat_goal:
            outcome.records.append(from_template(base, "conversion", now, goal=goal[0], value=goal[1]))
        if state is not None:
            state.base, state.identified = base, identified
            state.decided = True
            outcome.records.extend(self._requested(state))
        if body is not None and marked is not False:
            self._fill(body, ctx, profile, now, base, outcome, charset, preview, traits, marked is None)
            if self.recorded_enriched is not None and is_page and ctx.enriched and consent.analytics:
                self._record_enriched(outcome.records[0], ctx)
        if preview is not None:  # an author looking: nothing recorded, nothing learnt
            outcome.records.clear()
            outcome.private = True
        elif is_page and self._page_observers:
            self._observe_page(ctx, profile, body, now)
        if outcome.cookies:
            outcome.private = True
        return outcome

    def pageview_only(self, state: RequestState, body: bytes, path: str | None = None,
                      marked: bool | None = None) -> list[LazyRecord] | None:
        """The records of a page nothing of ours changes, to be worked out after it is sent; else None.

        Nothing changes when the page has no markers, no cookie of ours is to be set
        or expired (no personalization consent, no id cookie, no preview), there is
        no debug header, no identify()/track() waits, and no strategy learns from page
        views: then the app's response goes out as it is, and context, channel,
        referrer, UTM and consent are read for the record in the sink's thread.
        Under opt-in, a Cookie header naming none of our cookies (nor a consent
        manager's) settles it without parsing: no consent, so no cookie to set.
        ``path`` is the request's (the flow knows it), for the goal a page reaches;
        ``marked`` what :func:`has_markers` said of ``body`` if it was asked already.
        """
        if (self.debug or self._page_observers or self._record_observers or state.pending
                or (marked if marked is not None else has_markers(body))):
            return None
        cookie_header, query_string = state.peek()
        if query_string and PREVIEW_PARAM in query_string:
            return None
        consent: Consent | None = None  # None: no signal, read in the sink's thread from the same header
        if not self.consent_reader.opt_in or (cookie_header and mentions(cookie_header, self._our_cookies)):
            ctx = state.context()
            seen = state.visitor(ctx)
            cookies = seen.cookies
            if seen.consent.personalization or seen.cookie_name in cookies or PREVIEW_COOKIE in cookies:
                return None
            consent, path = seen.consent, ctx.path
        state.decided = True
        now, (build, source) = self.clock(), state.later_context()
        goal = self.goal_for(path if path is not None else state.context().path)
        # What the records are made of, all held by the request already (see LazyRecord).
        made_of = (build, source, consent, state.page_path, state.traits, now)
        records = [LazyRecord(self._make_later, "pageview", None, *made_of)]
        if goal is not None:
            records.append(LazyRecord(self._make_later, "conversion", goal, *made_of))
        return records

    def _later_record(self, kind: str, goal: tuple[str, float | None] | None, build: ContextBuilder,
                      source: Any, consent: Consent | None, page_path: str | None,
                      traits: dict[str, Any] | None, now: float) -> dict[str, Any]:
        """A record of :meth:`pageview_only`, made in the sink's thread from what the request held."""
        ctx = build(source, self.country_header)
        channel = self.channels.classify(ctx.utm, ctx.referrer_host, ctx.host)
        read = consent if consent is not None else self.read_visitor(ctx).consent
        base = self._base(ctx, read, None, page_path or ctx.path, channel)
        if traits and self.recorded_traits and read.analytics:
            base["props"] = self._recorded(traits)
        if goal is None:
            return from_template(base, kind, now)
        return from_template(base, kind, now, goal=goal[0], value=goal[1])

    def emit_later(self, records: list[LazyRecord]) -> None:
        """The records of :meth:`pageview_only`, once the page went out (no strategy watches them)."""
        try:
            self.queue.put_many(records)
        except Exception:
            log.exception("personalize_mw: could not queue touchpoints")

    def _base(self, ctx: RequestContext, consent: Consent, profile: Profile | None, path: str,
              channel: str) -> dict[str, Any]:
        """The record template every record of this request copies; ``profile`` only when it may be recorded."""
        base = _EMPTY_RECORD.copy()  # a copy and eight stores, not a call with 23 keyword arguments
        if profile is not None:
            base["visitor"], base["session"] = profile.visitor_id, profile.session_id
        base["path"], base["referrer_host"], base["channel"] = path[:_MAX_PATH], ctx.referrer_host, channel
        base["device"], base["country"] = ctx.device, ctx.country  # coarse classes, what lift --by reads
        base["utm"], base["consent"] = ctx.utm, consent.record()
        if self.keep_ip and consent.analytics:
            base["ip"] = truncate_ip(ctx.client)
        return base

    def _recorded(self, traits: dict[str, Any]) -> dict[str, Any] | None:
        """The merge fields the YAML names under ``merge_fields.record``; the others never leave."""
        return {name: traits[name] for name in self.recorded_traits if name in traits} or None

    def _record_enriched(self, pageview: dict[str, Any], ctx: RequestContext) -> None:
        """The `record:` fields of what the page's rules and templates asked enrichers, into its pageview."""
        assert self.recorded_enriched is not None and pageview["type"] == "pageview"
        fields = self.recorded_enriched.recorded_fields(ctx)
        if fields:  # a new mapping: the merge fields' is shared with the page's other records
            pageview["props"] = {**(pageview["props"] or {}), **fields}

    def _touch(self, profile: Profile, ctx: RequestContext, channel: str, referrer_host: str | None,
               now: float, is_page: bool, goal: tuple[str, float | None] | None) -> tuple[str, bool]:
        """Advance the session and remember the page; (channel of the touch, goal already met?)."""
        campaign = ctx.utm["campaign"]
        expired = (profile.session_id is None or now - profile.last_seen > self.session_timeout
                   or (campaign is not None and campaign != profile.session_campaign))
        if expired:
            profile.session_id = self.new_id()[:16]
            profile.visits += 1
            profile.session_campaign = campaign
            profile.session_channel = channel
            profile.session_goals = []
        elif channel == "direct" and profile.session_channel:
            # A click inside the site continues the session's channel, as analytics counts it.
            channel = profile.session_channel
        profile.last_seen = int(now)
        if is_page:
            profile.paths.append(ctx.path[:_MAX_PATH])
            if len(profile.paths) > self.max_paths:
                del profile.paths[: len(profile.paths) - self.max_paths]
        repeat = False
        if goal is not None:
            name = goal[0]
            repeat = name in profile.session_goals
            if not repeat:
                profile.session_goals.append(name)
            if name not in profile.goals:
                profile.goals.append(name)
        return channel, repeat

    def _goal_of(self, item: Requested) -> Goal | None:
        """The goal a track() call reaches; a client-side event reaches only a goal that allows it."""
        goal = self.config.goals.get(item.name or "") if item.kind == "track" else None
        return goal if goal is not None and (goal.client or not item.client) else None

    def _remember_goals(self, profile: Profile, requested: list[Requested]) -> None:
        """A goal reported by track() counts for goal_completed, as a goal path does; identify()'s account stays."""
        for item in requested:
            if item.account is not None:  # unit: account experiments assign by it from now on
                profile.account = item.account
            name = item.name
            if name is not None and self._goal_of(item) is not None:
                if name not in profile.goals:
                    profile.goals.append(name)
                if name not in profile.session_goals:
                    profile.session_goals.append(name)

    def _remember_user(self, profile: Profile, requested: list[Requested]) -> None:
        """An enricher asks a CRM by the user's keyed hash on later pages: the cookie keeps it."""
        for item in requested:
            if item.kind == "identify" and item.user is not None:
                profile.user = self.user_ids.hash_of_stored(item.user)

    def _requested(self, state: RequestState) -> list[dict[str, Any]]:
        """Records for the calls waiting in ``state``, taken one by one (a late call may race)."""
        base = state.base
        assert base is not None
        records = []
        pending = state.pending
        while pending:
            try:
                item = pending.pop(0)
            except IndexError:
                break
            if item.kind == "identify":
                if state.identified:
                    records.append(from_template(base, "identify", item.t, user=item.user, account=item.account))
                continue
            goal = self._goal_of(item)
            if goal is not None:
                value = item.value if item.value is not None else goal.value
                if item.client and goal.max_value is None:
                    value = goal.value  # the page may not say what a conversion is worth
                records.append(from_template(base, "conversion", item.t, goal=item.name, value=value,
                                             props=item.props))
            else:
                records.append(from_template(base, "event", item.t, event=item.name, value=item.value,
                                             props=item.props))
        return records

    def read_visitor(self, ctx: RequestContext) -> SeenVisitor:
        """Cookies, consent and (lazily) the verified profile: the one place a request is read."""
        cookies = parse_cookie_header(ctx.headers.get("cookie"), self._our_cookies)  # nothing else is read
        secure = self.cookie_secure(ctx)
        consent = DENIED if cookies is UNREADABLE else self.consent_reader.read(cookies, ctx.headers.get("sec-gpc"))
        return SeenVisitor(cookies, consent, secure, self.codec.name_for(secure), self.codec)

    def record_late(self, state: RequestState) -> bool:
        """Record calls made after the response was decided: the cookie as it came, not changed."""
        try:
            if state.base is None:
                ctx = state.context()
                seen = state.visitor(ctx)
                profile = seen.profile if seen.consent.analytics else None
                channel = (profile.session_channel if profile is not None and profile.session_channel
                           else self.channels.classify(ctx.utm, ctx.referrer_host, ctx.host))
                state.base = self._base(ctx, seen.consent, profile, state.page_path or ctx.path, channel)
                state.identified = profile is not None
            records = self._requested(state)
            return self.emit(records, rewritten=False) and bool(records)
        except Exception:
            log.exception("personalize_mw: could not record a late identify/track call")
            return False

    def _preview(self, ctx: RequestContext, cookies: dict[str, str], now: float, secure: bool,
                 outcome: Outcome) -> Preview | None:
        """A valid preview token from the link (then kept as a cookie) or from that cookie."""
        token = ctx.query.get(PREVIEW_PARAM) if ctx.query_string else None
        from_link = token is not None
        if token is None:
            token = cookies.get(PREVIEW_COOKIE)
            if token is None:
                return None
        preview = self.previews.load(token, now)
        if preview is not None and from_link:
            # Max-Age ends with the token: the browser drops the cookie when it expires.
            outcome.cookies.append(CookieSpec(PREVIEW_COOKIE, token, preview.expires - int(now), secure=secure))
        # A tampered or stale cookie is ignored, not answered: a page without slots
        # must come back exactly as the app sent it.
        return preview

    def _fill(self, body: bytes, ctx: RequestContext, profile: Profile | None, now: float,
              base: dict[str, Any], outcome: Outcome, charset: str, preview: Preview | None = None,
              traits: dict[str, Any] | None = None, look_first: bool = True) -> None:
        # Variants are rendered as UTF-8; a page in another ASCII-compatible
        # charset gets them re-encoded, characters it lacks as &#...; references.
        codec = None if charset in _UTF8 else charset
        debug: list[str] | None = [] if self.debug or preview is not None else None
        # Filled pages and rendered blocks are remembered by what decides them (core/page_memo.py,
        # core/block_memo.py), except in debug and preview and where enrichers are asked.
        remembers = debug is None and self.enrichment is None
        try:
            page = self.page_memo.page(body, codec, find_blocks if look_first else blocks_of)
        except MarkerError as exc:
            with self._warned_lock:
                first = ctx.path not in self._warned_paths
                self._warned_paths[ctx.path] = True
            if first:
                # %r: the path is the request's, and a %0A in it must not start a forged log line.
                log.warning("personalize_mw: markers on %r left as they are: %s", ctx.path, exc)
            return
        decided: Hashable | None = None  # the key of this request's decisions on this page, if kept
        if remembers:
            if not page.keyed:
                page.decision_key, page.keyed = self._page_key(page), True
            if page.decision_key is not None:
                decided = self._decisions_key(page.decision_key, ctx, profile, now)
        filled = page.filled(decided, ctx, profile, now) if decided is not None else None
        if filled is None:
            filled = self._filled(page, ctx, profile, now, codec, decided, debug, preview, traits)
        if filled.varies:
            outcome.private = outcome.varies = True  # varies by visitor, even when showing the default
        if filled.shown:
            exposures = from_template(base, "exposure", now)  # what the page's exposures share, made once
            outcome.records.extend([exposure(exposures, name, rule) for name, rule in filled.shown])
        if filled.body is not None:
            outcome.body = filled.body
        if debug:
            outcome.headers.append((DEBUG_HEADER, debug_value(debug)))

    @staticmethod
    def _decisions_key(page_key: PageKey, ctx: RequestContext, profile: Profile | None, now: float) -> Hashable | None:
        """``page_key.of()``, or None when its profile tests did not all answer as themselves: a regex
        cut short answers False whatever the value (another thread's timeout counts too: on the safe
        side), and a test that raised is the slot's own to report when it decides."""
        timeouts = conditions.regex_timeouts
        try:
            decided = page_key.of(ctx, profile, now)
        except Exception:
            return None
        return decided if conditions.regex_timeouts == timeouts else None

    def _page_key(self, page: Page) -> PageKey | None:
        """What decides the slots of ``page``: every one's request fields and profile tests (None: not kept)."""
        slots = [self.slots[block.name] for block in page.blocks if block.name in self.slots]
        fields: frozenset[str] = frozenset()
        for slot in slots:
            if slot.reads is None:
                return None
            fields |= slot.reads
        return PageKey(request_key(fields), merged_tests(slot.profile_tests for slot in slots))

    def _filled(self, page: Page, ctx: RequestContext, profile: Profile | None, now: float, codec: str | None,
                decided: Hashable | None, debug: list[str] | None, preview: Preview | None,
                traits: dict[str, Any] | None) -> Filled:
        """What the page becomes for this visitor; kept in the page memo under ``decided`` (not None) if it may be."""
        body, blocks = page.body, page.blocks
        replacements: dict[int, bytes] = {}
        shows: dict[str, bytes | None] = {}  # a slot used twice on a page renders once
        shown: list[tuple[str, Decision]] = []
        variables: dict[str, Any] | None = None
        blocks_memo = self.block_memo.blocks if debug is None and self.enrichment is None else None
        pure = decided is not None  # False once something on the page is not what ``decided`` says
        render_keys: list[Callable[[RequestContext], Hashable]] = []
        visitor_keys: list[Callable[[Profile | None, float], Hashable]] = []
        personal = False  # a block rendered for this visitor alone (merge fields, say): its page is not kept
        for index, block in enumerate(blocks):
            slot = self.slots.get(block.name)
            if slot is None:
                continue
            if block.name in shows:
                html = shows[block.name]
                if html is not None:
                    replacements[index] = html
                continue
            if debug is not None:
                rule = self._decide_debugging(slot, ctx, profile, now, preview, debug)
            elif pure:
                rule, pure = slot.decided(ctx, profile, now)
            else:
                rule = slot.decide(ctx, profile, now)
            shows[block.name] = None
            if rule is None:
                continue
            if rule.default:  # holdout or unenrolled: the default stays, the exposure is recorded
                shown.append((block.name, rule))
                continue
            html = rule.static
            if html is not None:
                if codec is not None:
                    html = html.decode("utf-8").encode(codec, "xmlcharrefreplace")
            else:
                template = rule.template
                plan = self.block_memo.plan(template)
                key = None
                if (blocks_memo is not None and plan.key is not None and rule.variables is None and slot.remembers
                        and (not plan.reads_default or default_fits(block.content_start, block.content_end))):
                    key = (template, block.name, rule.variant, codec, plan.key(ctx), plan.visitor_key(profile, now),
                           body[block.content_start:block.content_end] if plan.reads_default else None)
                    html = blocks_memo.get(key)
                    render_keys.append(plan.key)
                    visitor_keys.append(plan.visitor_key)
                else:
                    pure, personal = False, True
                if html is None:
                    try:
                        if template is None:  # a plug-in's Decision with nothing to show
                            raise RenderError("the decision has neither a template nor static bytes")
                        if variables is None:
                            variables = self._variables(ctx, profile, now, traits)
                        slot_vars = {"name": block.name, "variant": rule.variant}
                        if plan.reads_default:  # decoded only for the templates that show it
                            slot_vars["default"] = Markup(
                                body[block.content_start:block.content_end].decode(codec or "utf-8", "replace"))
                        context = {**variables, "slot": slot_vars}
                        if rule.variables:
                            context.update(rule.variables)
                        html = self.renderer.render(template, context)
                    except TraitMissing:  # no merge field for this visitor: the block's own content, quietly
                        pure = False
                        continue
                    except RenderError as exc:
                        log.warning("personalize_mw: variant %s of slot %s not rendered (%s); default kept",
                                    rule.variant, block.name, exc)
                        pure = False
                        continue
                    if codec is not None:
                        html = html.decode("utf-8").encode(codec, "xmlcharrefreplace")
                    if key is not None:
                        self.block_memo.remember(key, html)
            shows[block.name] = html
            replacements[index] = html
            shown.append((block.name, rule))
        filled = Filled(self.page_memo.splice(page, replacements, keep=not personal) if replacements else None,
                        bool(shows), tuple(shown))
        if pure:
            self.page_memo.remember(page, decided, RenderKeys(tuple(render_keys), tuple(visitor_keys)),
                                    ctx, profile, now, filled)
        return filled

    @staticmethod
    def _decide_debugging(slot: SlotDecider, ctx: RequestContext, profile: Profile | None, now: float,
                          preview: Preview | None, debug: list[str]) -> Decision | None:
        """The decision with what was tried, for X-Personalize-Debug; a preview forces its variant."""
        if preview is not None and preview.slot in (None, slot.name):
            forced = slot.preview(preview.variant, preview.segment)
            if forced is not None:
                debug.append(f"{slot.name}: preview => {forced.variant} ({forced.rule_id})")
                return forced
        tried, rule = slot.explain(ctx, profile, now)
        if rule is None or rule.default:
            shown = "default" + (f" ({rule.arm}, would be {rule.variant})" if rule is not None else "")
        else:
            shown = f"{rule.variant} ({rule.rule_id}, {rule.arm})"
        debug.append(f"{slot.name}: {' '.join(tried) or '-'} => {shown}")
        return rule

    def _variables(self, ctx: RequestContext, profile: Profile | None, now: float,
                   traits: dict[str, Any] | None = None) -> dict[str, Any]:
        """What a variant template may read: no ids; the merge fields the view gave, if any."""
        visitor = {name: field(profile, now) for name, field in VISITOR_FIELDS.items()}
        # A copy per render, as query's (the sandbox lets a template call dict.update());
        # without merge fields one shared mapping that refuses writes, so none is built.
        visitor["traits"] = Traits(traits) if traits else NO_TRAITS
        request = {"path": ctx.path, "query": dict(ctx.query), "utm": dict(ctx.utm),
                   "device": ctx.device, "language": ctx.language, "country": ctx.country}
        if self.enrichment is not None:  # {{ company.name }}, {{ geo.city }}; a person's data with consent only
            return {**self.enrichment.variables(ctx, profile), "visitor": visitor, "request": request}
        return {"visitor": visitor, "request": request}

    # ------------------------------------------------------------ after sending

    def visit_safely(self, make_context: Callable[[], RequestContext], body: bytes | None,
                     is_page: bool, state: RequestState | None = None,
                     content_type: str | None = None, marked: bool | None = None) -> Outcome:
        """:meth:`visit` for adapters: any internal failure means "change nothing"."""
        try:
            charset = (page_charset(content_type) if content_type else None) or "utf-8"
            return self.visit(make_context(), body, self.clock(), is_page=is_page, state=state,
                              charset=charset, marked=marked)
        except Exception:
            log.exception("personalize_mw: internal error; the original response is served")
            return NOTHING

    def _observe_page(self, ctx: RequestContext, profile: Profile | None, body: bytes | None,
                      now: float) -> None:
        for observe in self._page_observers:
            try:
                observe(ctx, profile, body, now)
            except Exception:
                log.exception("personalize_mw: a strategy failed to learn from a page view")

    def commit(self, outcome: Outcome, rewritten: bool) -> None:
        """Queue the records of a response that has been sent."""
        if outcome.records:
            self.emit(outcome.records, rewritten)

    def emit(self, records: list[dict[str, Any]], rewritten: bool) -> bool:
        """The one door records leave by; the learning strategies see each one that does.

        Exposures count only when the rewritten body went out: a variant that
        was decided but not delivered was not seen (PlanOut #69). False if a
        record could not be queued.
        """
        accepted = True
        try:
            untrack_records(records)  # they wait in the queue for thousands of requests
            accepted = self.queue.put_many(records if rewritten else
                                           [r for r in records if r["type"] != "exposure" or _showed_default(r)])
        except Exception:
            log.exception("personalize_mw: could not queue touchpoints")
            accepted = False
        for observe in self._record_observers:
            try:
                observe(records, rewritten)
            except Exception:
                log.exception("personalize_mw: a strategy failed to learn from sent records")
        return accepted
