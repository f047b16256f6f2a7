"""The configuration schema (pydantic) and its loader from YAML, dicts or objects.

The loader keeps the YAML node tree so that every validation error can name
the file, the line and the key, the way a marketer editing YAML needs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .config_problems import in_file_order, line_of, validated
from .errors import ConfigError, KeyPath, Problem

Category = Literal["analytics", "personalization", "advertising"]
CATEGORIES: tuple[Category, ...] = ("analytics", "personalization", "advertising")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CookieConfig(_Strict):
    name: str = Field("pmw_id", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    # Browsers cap cookie lifetimes at 400 days; a longer Max-Age is silently cut.
    max_age_days: int = Field(395, ge=1, le=400)
    secure: Literal["auto"] | bool = "auto"
    max_paths: int = Field(20, ge=1, le=200)
    session_timeout_minutes: int = Field(30, ge=1, le=24 * 60)


class ConsentMapping(_Strict):
    # Our category -> the names the consent manager uses for it.
    cc_cookie: dict[Category, list[str]] = {
        "analytics": ["analytics"],
        "personalization": ["personalization", "functionality"],
        "advertising": ["advertising", "marketing", "targeting"],
    }
    klaro: dict[Category, list[str]] = {
        "analytics": ["analytics"],
        "personalization": ["personalization"],
        "advertising": ["advertising"],
    }
    # OneTrust's default groups: C0002 performance, C0003 functional, C0004 targeting.
    onetrust: dict[Category, list[str]] = {
        "analytics": ["C0002"],
        "personalization": ["C0003"],
        "advertising": ["C0004"],
    }


ConsentSource = Literal["own", "cc_cookie", "klaro", "onetrust"]


class ConsentConfig(_Strict):
    mode: Literal["opt-in", "opt-out"] = "opt-in"
    cookie_name: str = Field("pmw_consent", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    endpoint: str = Field("/_personalize/consent", pattern=r"^/[^?#\s]*$")
    # Six months, what the CNIL recommends before asking again.
    max_age_days: int = Field(182, ge=1, le=400)
    sources: list[ConsentSource] = ["own", "cc_cookie", "klaro", "onetrust"]
    mapping: ConsentMapping = ConsentMapping()


class Goal(_Strict):
    path: str | None = None
    path_prefix: str | None = None
    value: float | None = None
    # Client-side events (POST /_personalize/event) are the browser's word, not the
    # server's: they reach this goal only if it says so, and then carry its own value
    # unless max_value lets the page report one (0 <= value <= max_value).
    client: bool = False
    max_value: float | None = Field(None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_target(self) -> Goal:
        if (self.path is None) == (self.path_prefix is None):
            raise ValueError("a goal needs exactly one of 'path' or 'path_prefix'")
        return self


class Rule(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    if_: Any = Field(alias="if")
    variant: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    template: str | None = None
    template_file: str | None = None
    id: str | None = None

    @model_validator(mode="after")
    def _one_template(self) -> Rule:
        if (self.template is None) == (self.template_file is None):
            raise ValueError("a rule needs exactly one of 'template' or 'template_file'")
        return self


_VARIANT = r"^[A-Za-z0-9_.:-]{1,64}$"


class Variant(_Strict):
    """A variant of ``variants:`` (split, bandit) or of a journey stage."""

    variant: str = Field(pattern=_VARIANT)
    weight: float = Field(1.0, ge=0)  # split: relative share of enrolled visitors
    template: str | None = None
    template_file: str | None = None
    id: str | None = None
    goal: str | None = None  # a call to action for this goal: not shown once the goal is completed
    content: str | None = None  # the path it recommends: not shown once the visitor has read it

    @model_validator(mode="after")
    def _one_template(self) -> Variant:
        if (self.template is None) == (self.template_file is None):
            raise ValueError("a variant needs exactly one of 'template' or 'template_file'")
        return self


class Slot(BaseModel):
    # Extra keys are option blocks named like a strategy of the slot (``crowd:``, ``bandit:``,
    # a plug-in's name, or ``options:`` for python: plug-ins); rules.slot checks them.
    model_config = ConfigDict(extra="allow", frozen=True)

    strategy: str | list[str] | None = None  # default: rules, then split when variants are given
    rules: list[Rule] = []
    variants: list[Variant] = []
    stages: dict[str, Variant | list[Variant]] = {}  # journey: stage name -> variant(s)
    holdout: float = Field(0.0, ge=0, lt=1)  # share of enrolled visitors kept on the default
    experiment: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")  # id and hash salt
    # What the experiment assigns: each visitor, or each account of identify() (a buying group, one arm).
    unit: Literal["visitor", "account"] = "visitor"


class Stage(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9_-]{1,64}$")
    if_: Any = Field(None, alias="if")  # None: always (the first stage, e.g. awareness)


class JourneyConfig(_Strict):
    # In funnel order; a visitor is in the LAST stage whose condition holds.
    stages: list[Stage] = []


class RenderConfig(_Strict):
    max_output_bytes: int = Field(64 * 1024, ge=256, le=4 * 1024 * 1024)
    timeout_ms: float = Field(50.0, gt=0, le=10_000)
    allowed_url_schemes: list[str] = ["http", "https", "mailto", "tel"]


class ChannelConfig(_Strict):
    """Overrides for the channel classification (merged over the defaults)."""

    mediums: dict[str, str] = {}
    sources: dict[str, str] = {}
    referrers: dict[str, str] = {}


class DeliveryConfig(_Strict):
    """How records reach the sinks; see docs/configuration.md#delivery."""

    queue_size: int = Field(10_000, ge=10, le=10_000_000)  # records in memory, per sink
    batch_size: int = Field(100, ge=1, le=10_000)
    flush_interval_s: float = Field(0.5, gt=0, le=60)
    max_retry_delay_s: float = Field(60.0, gt=0, le=3600)
    # Default: a .personalize_spool folder beside the YAML file (base_dir).
    spool_dir: str | None = None
    spool_max_bytes: int = Field(64 * 1024 * 1024, ge=0)  # per sink and process; 0: no spool
    shutdown_timeout_s: float = Field(5.0, ge=0, le=300)


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


class HttpSinkConfig(_Strict):
    """Options of the http(s) sinks; see personalize_mw.touchpoints.http."""

    # Sent with every batch, e.g. Authorization: "Basic ${SEGMENT_AUTH}".
    headers: dict[str, str] = {}
    timeout_s: float = Field(10.0, gt=0, le=300)

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        return check_headers(headers)


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """Request headers of ours (http sink, http enricher): tokens for names, no line breaks in values."""
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"header name {name!r} is not a valid HTTP token")
        if not value.isascii() or any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name}: the value must be ASCII without CR, LF or NUL")
    return headers


class EventsConfig(_Strict):
    """The client-side event endpoint; see personalize_mw.core.event_endpoint."""

    endpoint: str = Field("/_personalize/event", pattern=r"^/[^?#\s]*$")
    max_body_bytes: int = Field(2048, ge=256, le=64 * 1024)
    # Per process and minute: per visitor id, and per /24 (/48) network for visitors without one.
    rate_per_minute: int = Field(60, ge=1, le=1_000_000)
    anonymous_rate_per_minute: int = Field(600, ge=1, le=1_000_000)  # per network, ids or not
    max_value: float = Field(1_000_000, gt=0, allow_inf_nan=False)  # |value| of a client event


class PrivacyConfig(_Strict):
    """The visitor's own access and erasure requests; see personalize_mw.core.privacy_endpoint."""

    endpoint: str | None = Field("/_personalize/privacy", pattern=r"^/[^?#\s]*$")  # null: switched off
    # Per process and hour. Each request reads every sink that holds records: a budget, not a courtesy.
    rate_per_hour: int = Field(10, ge=1, le=10_000)  # per visitor id
    network_rate_per_hour: int = Field(60, ge=1, le=100_000)  # per /24 (/48) network


class IdentityConfig(_Strict):
    """How identify() stores user ids; see personalize_mw.core.identity."""

    hash: bool = True
    # The HMAC key for user ids; by default derived from the oldest of secret_keys.
    key: str | None = Field(None, min_length=16)


_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")  # as long as a marker's name may be


class MergeFieldsConfig(_Strict):
    """Merge fields from ``personalize_mw.context()``; see docs/enrichment.md#merge-fields."""

    # The names a page's records carry in ``props`` (analytics consent only); the others never leave.
    record: list[str] = []

    @field_validator("record")
    @classmethod
    def _field_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not 0 < len(name) <= 64 or not name.isidentifier():
                raise ValueError(f"{name!r} is not a merge field name (letters, digits, _; up to 64)")
        return list(dict.fromkeys(names))


class EnricherConfig(BaseModel):
    """One ``enrichment:`` entry; its other keys are the enricher's options, checked by the
    enricher itself (personalize_mw.enrich), so every mistake still has its line."""

    model_config = ConfigDict(extra="allow", frozen=True)

    # http | geoip | company | an entry point in personalize_mw.enrichers | python:module:Class
    type: str = Field(min_length=1)
    # Fields a page's pageview carries in ``props`` as NAME.field (analytics consent only); see
    # docs/enrichment.md#recording-enriched-fields. Taken out before the enricher sees its options.
    record: list[str] = []

    @field_validator("record")
    @classmethod
    def _recorded_names(cls, names: list[str]) -> list[str]:
        from .enrich.recorded import check_recorded

        return check_recorded(names)


_ENRICHER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")  # a template variable and a field prefix


class Config(_Strict):
    secret_keys: list[str] = Field(min_length=1)
    enabled: bool = True
    cookie: CookieConfig = CookieConfig()
    consent: ConsentConfig = ConsentConfig()
    segments: dict[str, Any] = {}
    goals: dict[str, Goal] = {}
    # Goals an experiment must not lower: `personalize-mw lift --config` flags a variant that did.
    guardrails: list[str] = []
    slots: dict[str, Slot] = {}
    journey: JourneyConfig = JourneyConfig()
    # Fields from outside the request (CRM, IP databases): NAME.field in conditions and templates.
    enrichment: dict[str, EnricherConfig] = {}
    # One sink URL or a list; each sink has its own queue, worker and spool.
    sink: str | list[str] = "jsonl:touchpoints.jsonl"
    delivery: DeliveryConfig = DeliveryConfig()
    # Where crowd and bandit slots keep their counts: memory | sqlite:PATH | redis://host:port/db.
    state: str = "memory"
    http_sink: HttpSinkConfig = HttpSinkConfig()
    render: RenderConfig = RenderConfig()
    channels: ChannelConfig = ChannelConfig()
    country_header: str = "cf-ipcountry"
    # Where the time conditions (after, before, weekday, hour) read the clock: an IANA zone name.
    timezone: str = "UTC"
    buffer_limit: int = Field(2 * 1024 * 1024, ge=1024)
    regex_timeout_ms: float = Field(5.0, gt=0, le=1000)
    # No IP address is stored unless 'truncate': then a /24 or /48, with analytics consent only.
    ip: Literal["none", "truncate"] = "none"
    # Debug aids for staging: GET /_personalize/stats answers with the delivery counters.
    debug: bool = False
    identity: IdentityConfig = IdentityConfig()
    merge_fields: MergeFieldsConfig = MergeFieldsConfig()
    events: EventsConfig = EventsConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    # personalize-mw prune deletes older records; 760 days is about 25 months.
    retention_days: int = Field(760, ge=1, le=100 * 366)
    # Where template_file and a relative sink path are resolved; set by the loader.
    base_dir: str = "."

    @field_validator("secret_keys")
    @classmethod
    def _strong_keys(cls, keys: list[str]) -> list[str]:
        for key in keys:
            if len(key) < 16:
                raise ValueError("each secret key needs at least 16 characters (use ${ENV_VAR})")
        return keys

    @field_validator("slots", "goals", "segments")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"name {name!r} must match [a-z0-9_-]{1,64}")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (an IANA name: UTC, Europe/Berlin, "
                             "America/New_York)") from None
        return name

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


    @field_validator("enrichment")
    @classmethod
    def _enricher_names(cls, value: dict[str, EnricherConfig]) -> dict[str, EnricherConfig]:
        from .enrich.enrichment import RESERVED
        from .rules.conditions import PROFILE_FIELDS, REQUEST_FIELDS

        for name in value:
            if not _ENRICHER_NAME.match(name):
                raise ValueError(f"enricher name {name!r} must match [a-z][a-z0-9_]{{0,31}} "
                                 "(conditions read it as NAME.field)")
            if name in RESERVED or name in REQUEST_FIELDS or name in PROFILE_FIELDS:
                raise ValueError(f"enricher name {name!r} is taken by a condition field or a template variable")
        return value

    @field_validator("guardrails")
    @classmethod
    def _known_goals(cls, guardrails: list[str], info: ValidationInfo) -> list[str]:
        goals = info.data.get("goals")
        unknown = [g for g in guardrails if goals is not None and g not in goals]
        if unknown:
            raise ValueError(f"{', '.join(map(repr, unknown))} not among goals: "
                             f"({', '.join(goals or ()) or 'none defined'}); a guardrail is a goal's name")
        return list(dict.fromkeys(guardrails))

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "queue" in data:
            raise ValueError("'queue:' is now 'delivery:' (queue_size, batch_size, flush_interval_s, "
                             "max_retry_delay_s, spool_dir, spool_max_bytes, shutdown_timeout_s)")
        return data

    @field_validator("sink")
    @classmethod
    def _known_sinks(cls, sink: str | list[str]) -> str | list[str]:
        from .touchpoints.sink import check_url

        urls = [sink] if isinstance(sink, str) else sink
        if not urls:
            raise ValueError("give at least one sink URL")
        for url in urls:
            check_url(url)
        if len(set(urls)) != len(urls):
            raise ValueError("a sink URL is listed twice")
        return sink

    @field_validator("state")
    @classmethod
    def _known_state(cls, state: str) -> str:
        from .state import check_state_url

        check_state_url(state)
        return state

    @property
    def sinks(self) -> list[str]:
        """The sink URLs, always as a list."""
        return [self.sink] if isinstance(self.sink, str) else list(self.sink)

    def spool_path(self) -> Path:
        return self.resolve(self.delivery.spool_dir or ".personalize_spool")

    def resolve(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else Path(self.base_dir) / path


# ---------------------------------------------------------------- loading

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


# Where ${ENV} is read: the keys that hold secrets and addresses of the deployment.
# Never in templates, segments or anything a page shows: a YAML author must not be
# able to put the server's environment into a public page (elsewhere "${" is text).
_ENV_KEYS = frozenset({"secret_keys", "sink", "state", "http_sink", "identity", "country_header", "base_dir"})
_ENV_PATHS = {("delivery", "spool_dir")}
# enrichment.NAME.<key>: where an enricher's address, database and credentials are.
_ENV_ENRICHMENT = frozenset({"url", "headers", "database"})


def _reads_env(path: tuple[str | int, ...]) -> bool:
    return bool(path) and (path[0] in _ENV_KEYS or path[:2] in _ENV_PATHS
                           or (path[0] == "enrichment" and len(path) > 2 and path[2] in _ENV_ENRICHMENT))


def _interpolate(value: Any, path: KeyPath, problems: list[Problem]) -> Any:
    if isinstance(value, str):
        if not _reads_env(path):
            return value
        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found is not None:
                return found
            if default is not None:
                return default
            problems.append((path, f"environment variable {name} is not set"))
            return ""
        return _ENV.sub(sub, value) if "${" in value else value
    if isinstance(value, dict):
        return {k: _interpolate(v, path + (k,), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, path + (i,), problems) for i, v in enumerate(value)]
    return value


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load that refuses aliases: no billion-laughs expansion, ever."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                "while reading personalize config", None,
                "YAML aliases (*name) are not allowed here", event.start_mark,
            )
        return super().compose_node(parent, index)


def read_yaml(path: str | Path) -> tuple[dict[str, Any], yaml.Node | None]:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([((), f"cannot read file: {exc.strerror or exc}")], source) from None
    try:
        loader = _NoAliasLoader(text)
        try:
            node = loader.get_single_node()  # parsed once: the node tree gives lines, and the data
            data = loader.construct_document(node) if node is not None else {}
        finally:
            loader.dispose()
    except RecursionError:  # the composer recurses per level of nesting
        raise ConfigError([((), f"nested more than {_MAX_DEPTH} levels deep; flatten it "
                                "(a segment can name other segments)")], source, [None]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError([((), f"invalid YAML: {getattr(exc, 'problem', None) or exc}")], source, [line]) from None
    if not isinstance(data, dict):
        raise ConfigError([((), "the top level must be a mapping of keys")], source, [1])
    return data, node


_MAX_DEPTH = 64  # levels of mappings and lists; any real config stays far below


def _too_deep(data: Any) -> tuple[Any, ...] | None:
    """The key path of the first value nested past _MAX_DEPTH, or None; without recursion.

    A condition nested 3,000 deep would otherwise end validation, compilation or
    `personalize-mw check` with a bare RecursionError.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > _MAX_DEPTH:
            return path[:_MAX_DEPTH + 1]
        if isinstance(value, Mapping):
            stack.extend((v, (*path, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in enumerate(value))
    return None


ConfigSource = str | Path | Mapping[str, Any] | Config  # what load_config and the middlewares take


def load_config(config: ConfigSource) -> Config:
    """Validate a YAML path, a dict of the same shape, or pass a Config through.

    Everything that could fail on the first request is checked here: schema,
    conditions, templates and regexes, so a bad file stops start-up instead. Every
    problem is reported at once: the schema's, then those of conditions, templates
    and strategies in what passed the schema. Nothing is opened or written (the
    state store of crowd and bandit slots is opened where the middleware starts).
    """
    if isinstance(config, Config):
        return config
    node: yaml.Node | None = None
    source: str | None = None
    if isinstance(config, (str, Path)):
        source = str(config)
        data, node = read_yaml(config)
        data.setdefault("base_dir", str(Path(config).resolve().parent))
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise TypeError("config= takes a YAML path, a dict, or a personalize_mw.Config")

    deep = _too_deep(data)
    if deep is not None:
        problem = (deep, f"nested more than {_MAX_DEPTH} levels deep; flatten it (a segment can name other segments)")
        raise ConfigError([problem], source, [line_of(node, deep)])
    unset: list[Problem] = []
    data = _interpolate(data, (), unset)
    loaded, problems = validated(Config, data, _NAME)  # data: our own copy, rebuilt by _interpolate
    # An unset variable is one problem, not also one of the empty value it leaves.
    problems = [(p, m) for p, m in problems if not any(p[:len(u)] == u or u[:len(p)] == p for u, _ in unset)]
    found = in_file_order(unset + problems, node)
    if loaded is not None:
        from .rules.engine import compiled_slots

        try:
            compiled_slots(loaded, check_only=True)  # thrown away: the middleware compiles its own
        except ConfigError as exc:
            found += in_file_order(exc.problems, node)
    if found or loaded is None:
        raise ConfigError([p for p, _ in found], source, [line for _, line in found])
    return loaded
