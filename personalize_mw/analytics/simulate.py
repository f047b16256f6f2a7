"""Synthetic visitors with a known truth, for checking lift and attribution end to end.

The world is the example site (Acme Analytics): personas arrive over four weeks
through their channels, give or refuse consent, read pages, see the variants the
example rules choose for them, and sign up with a probability that is their
persona's base rate plus the true effect of each variant they were actually
shown. ``TRUE_EFFECTS`` is that truth. ``hero:pricing`` has none, but it is
shown to the visitors who read the pricing page twice: buyers who sign up
anyway, so last-touch attribution credits it richly while its lift is zero.

Every slot runs an experiment with a holdout (``HOLDOUT``): enrolled visitors
(those with a visitor id, i.e. analytics and personalization consent) are split
by a hash; held-out visitors see the default, and their exposure records say
which variant they would have seen (``arm: holdout``).

Two drivers walk the same journeys (:func:`_journey`): :mod:`.simulate_site`
through the real example site, where the middleware chooses, assigns the arms
and writes the records (``personalize-mw simulate``, the default); and
:func:`simulate` here, which writes the records the site would write in the
documented shape (docs/touchpoints.md) without it, seeded and about six
times faster, mirroring the example rules for the pages the personas visit.

Planted segments (``segments=True``, ``simulate --segments``): the personas are
the segments (they differ in channel and content read), and each variant's
true effect depends on the persona (``SEGMENT_EFFECTS``), e.g. the benchmark
call to action helps researchers and distracts buyers. The drivers then fill
``labels`` with visitor id -> persona for every visitor who has an id: the
truth that ``suggest segments`` is checked against.

Each visitor of :func:`simulate` has a device and a country (``DEVICES``,
``COUNTRIES``, drawn from a stream of their own so that the rest of a seeded run
stays as it was), on every record as the site writes them. A :class:`Truth`
sets up other worlds with a known answer, for the properties of ``suggest
actions`` (tests/test_loop_properties.py): only some personas, a chosen true
effect for a variant, or an effect per device (one that helps on mobile and
hurts on desktop).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any

from ..touchpoints.encoding import line_of
from ..touchpoints.record import FIELDS, SCHEMA_VERSION, format_ts

START = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
DAYS = 28
HOLDOUT = 0.5                      # every slot's holdout share in the simulated experiments
SIGNUP_VALUE = 150.0
WHITEPAPER_VALUE = 25.0
HOST = "acme-analytics.example"

# slot:variant -> added probability of signing up for a visitor who was shown it
TRUE_EFFECTS: dict[str, float] = {
    "hero:pricing": 0.0,      # shown to buyers who convert anyway: correlation, no causation
    "hero:linkedin": 0.05,
    "hero:switcher": 0.08,
    "hero:reviews": 0.04,
    "cta:benchmark": 0.03,
}

# With planted segments: persona -> slot:variant -> added probability of signing up.
SEGMENT_EFFECTS: dict[str, dict[str, float]] = {
    "buyer": {"hero:pricing": 0.0, "cta:benchmark": -0.06},   # a detour for someone about to buy
    "linkedin": {"hero:linkedin": 0.05, "cta:benchmark": 0.0},
    "switcher": {"hero:switcher": 0.08, "cta:benchmark": 0.02},
    "reviewer": {"hero:reviews": 0.04, "cta:benchmark": 0.02},
    "researcher": {"cta:benchmark": 0.06},
}


# Device classes and countries as the records name them (docs/touchpoints.md), with their shares; the same
# for every persona.
DEVICES = (("desktop", 0.55), ("mobile", 0.40), ("tablet", 0.05))
COUNTRIES = (("US", 0.45), ("GB", 0.15), ("DE", 0.15), ("FR", 0.10), ("IN", 0.15))


def effects_for(persona: str, segments: bool) -> dict[str, float]:
    """The true effects a visitor of ``persona`` converts with."""
    return SEGMENT_EFFECTS[persona] if segments else TRUE_EFFECTS


@dataclass(frozen=True)
class Truth:
    """The effects visitors convert with: ``TRUE_EFFECTS`` (``SEGMENT_EFFECTS`` per persona with
    ``segments``), where ``effects`` replaces a variant's for every visitor, and ``device_effects``
    (device -> slot:variant -> effect) for the visitors on that device."""
    segments: bool = False
    effects: Mapping[str, float] = field(default_factory=dict)
    device_effects: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def of(self, persona: str, device: str | None) -> dict[str, float]:
        found = {**effects_for(persona, self.segments), **self.effects}
        if device is not None:
            found.update(self.device_effects.get(device, {}))
        return found


@dataclass(frozen=True)
class Persona:
    name: str
    share: float
    base: float                                   # P(sign-up) without any variant
    channels: tuple[tuple[str, float], ...]       # landing kind -> weight
    whitepaper: float = 0.0                       # P(downloading the whitepaper)


PERSONAS = (
    # Read pricing on two visits, then come home to the pricing hero: high intent.
    Persona("buyer", 0.15, 0.45, (("direct", 0.5), ("email", 0.3), ("organic", 0.2))),
    Persona("linkedin", 0.20, 0.04, (("linkedin", 1.0),)),
    Persona("switcher", 0.15, 0.06, (("competitor", 1.0),)),
    Persona("reviewer", 0.15, 0.05, (("g2", 1.0),)),
    Persona("researcher", 0.35, 0.02, (("organic_blog", 1.0),), whitepaper=0.15),
)

# landing kind -> (query string, referrer host, channel, utm)
LANDINGS: dict[str, tuple[str, str | None, str, dict[str, str | None]]] = {
    "direct": ("", None, "direct", {}),
    "email": ("utm_source=newsletter&utm_medium=email&utm_campaign=nov", None, "email",
              {"source": "newsletter", "medium": "email", "campaign": "nov"}),
    "organic": ("", "www.google.com", "organic", {}),
    "organic_blog": ("", "www.google.com", "organic", {}),
    "linkedin": ("utm_source=linkedin&utm_medium=social&utm_campaign=launch", "www.linkedin.com", "social",
                 {"source": "linkedin", "medium": "social", "campaign": "launch"}),
    "competitor": ("utm_source=google&utm_medium=cpc&utm_campaign=competitor-x", "www.google.com", "paid_search",
                   {"source": "google", "medium": "cpc", "campaign": "competitor-x"}),
    "g2": ("", "www.g2.com", "referral", {}),
}
POSTS = ("activation-metrics", "pricing-page-teardown", "attribution-without-third-parties")
CONSENT_CHOICES = (("all", 0.65), ("none", 0.25), ("analytics", 0.10))
HERO_BY_LANDING = {"linkedin": "linkedin", "competitor": "switcher", "g2": "reviews"}


_CUMULATIVE: dict[tuple[tuple[str, float], ...], tuple[list[str], list[float]]] = {}


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    # The cumulative weights choices() would sum on every call, summed once: the same draw, the same pick.
    if (known := _CUMULATIVE.get(weighted)) is None:
        known = _CUMULATIVE[weighted] = [k for k, _ in weighted], list(accumulate(w for _, w in weighted))
    return rng.choices(known[0], cum_weights=known[1])[0]


_UUID_KEEP = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)  # the version and variant bits cleared
_UUID_SET = (4 << 76) | (0x8000 << 48)  # version 4, RFC 4122 variant


class _Visitor:
    """One simulated visitor: writes the records of their requests in time order."""

    def __init__(self, rng: random.Random, persona: Persona, t: float, side: random.Random) -> None:
        self.rng, self.persona, self.t = rng, persona, t
        self.device, self.country = _pick(side, DEVICES), _pick(side, COUNTRIES)
        self.landing = _pick(rng, persona.channels)
        self.choice = _pick(rng, CONSENT_CHOICES)
        enrolled = self.choice == "all"
        self.id = self._uuid() if enrolled else None
        self.consent = {"analytics": self.choice != "none", "personalization": enrolled,
                        "advertising": enrolled, "gpc": False}
        self.arm = {slot: ("holdout" if rng.random() < HOLDOUT else "treatment") for slot in ("hero", "cta")}
        self.shown: set[str] = set()
        self.records: list[dict[str, Any]] = []
        self.session: str | None = None
        self.channel = "direct"
        self.utm: dict[str, str | None] = {}
        self.referrer: str | None = None

    def _uuid(self) -> str:
        # str(uuid.UUID(int=bits, version=4)), formatted here: the same string, in a third of the time
        bits = (self.rng.getrandbits(128) & _UUID_KEEP) | _UUID_SET
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def new_session(self, landing: str, gap_hours: float) -> None:
        self.t += gap_hours * 3600
        _, self.referrer, self.channel, utm = LANDINGS[landing]
        self.utm = {k: utm.get(k) for k in ("source", "medium", "campaign", "term", "content")}
        self.session = self._uuid() if self.id else None

    def _record(self, kind: str, path: str, **fields: Any) -> None:
        rec = dict.fromkeys(FIELDS)
        rec.update(id=self._uuid(), ts=format_ts(self.t), schema=SCHEMA_VERSION, type=kind, visitor=self.id,
                   session=self.session, path=path, referrer_host=self.referrer, channel=self.channel,
                   device=self.device, country=self.country, utm=dict(self.utm), consent=dict(self.consent))
        rec["experiment"] = None
        rec.update(fields)
        self.records.append(rec)

    def _expose(self, path: str, slot: str, variant: str, rule: str) -> None:
        if self.id is None:
            arm = "unenrolled"
        else:
            arm = self.arm[slot]
        self._record("exposure", path, slot=slot, variant=variant, rule=rule, arm=arm, experiment=f"{slot}-sim",
                     holdout_share=None if arm == "unenrolled" else HOLDOUT)
        if arm != "holdout":
            self.shown.add(f"{slot}:{variant}")

    def view(self, path: str, hero: tuple[str, str] | None = None, cta: tuple[str, str] | None = None) -> None:
        self.t += self.rng.uniform(20, 180)
        self._record("pageview", path)
        if hero:
            self._expose(path, "hero", *hero)
        if cta:
            self._expose(path, "cta", *cta)
        self.referrer = HOST  # the next click comes from inside the site; the session keeps its channel

    def convert(self, goal: str, path: str, value: float, same_request: bool = False) -> None:
        if not same_request:
            self.t += self.rng.uniform(20, 120)
        self._record("conversion", path, goal=goal, value=value)

    def download(self) -> None:
        self.convert("whitepaper", "/whitepaper/download", WHITEPAPER_VALUE)

    def signup(self) -> None:
        self.view("/signup")
        self.view("/thanks")   # the goal page: its pageview and the conversion share a request
        self.convert("signup", "/thanks", SIGNUP_VALUE, same_request=True)


def _blog_visit(v: Any) -> None:
    v.view(f"/blog/{v.rng.choice(POSTS)}", cta=("benchmark", "cta.4"))


def _journey(v: Any, truth: Truth) -> None:
    rng, p = v.rng, v.persona
    v.new_session(v.landing, 0)
    if p.name == "researcher":
        _blog_visit(v)
        if rng.random() < 0.5:
            _blog_visit(v)
        if rng.random() < p.whitepaper:
            v.view("/whitepaper")
            v.download()
    elif p.name == "buyer":
        if rng.random() < 0.5:   # found us through the blog first
            _blog_visit(v)
        v.view("/pricing")
        v.new_session(_pick(rng, p.channels), rng.uniform(12, 96))
        v.view("/pricing")
        # pricing_intent needs the profile, i.e. personalization consent
        v.view("/", hero=("pricing", "hero-pricing") if v.consent["personalization"] else None)
    else:
        if rng.random() < 0.3:   # an earlier visit to a blog post, from search
            _blog_visit(v)
            v.new_session(v.landing, rng.uniform(24, 240))
        rule = {"linkedin": "hero.1", "switcher": "hero.2", "reviews": "hero.3"}
        variant = HERO_BY_LANDING[v.landing]
        v.view("/", hero=(variant, rule[variant]))   # request rules: they match without consent too
        if rng.random() < 0.4:
            v.view("/pricing")
    effects = truth.of(p.name, getattr(v, "device", None))
    chance = p.base + sum(effects.get(key, 0.0) for key in v.shown)
    if rng.random() < chance:
        v.signup()


def simulate(visitors: int = 10_000, *, seed: int = 7, progress: Callable[[int], None] | None = None,
             segments: bool = False, labels: dict[str, str] | None = None, personas: Collection[str] | None = None,
             truth: Truth | None = None) -> Iterator[dict[str, Any]]:
    """The records of ``visitors`` synthetic visitors, ordered by time.

    ``progress`` is called with the number of visitors done after each one.
    ``segments`` plants segments (see the module doc); ``labels``, if given, is
    filled with visitor id -> persona before the first record is yielded.
    ``personas``: only visitors of these (named as in ``PERSONAS``, in their
    shares among them). ``truth``: the effects visitors convert with (default
    :class:`Truth` of ``segments``).
    """
    truth = truth or Truth(segments=segments)
    rng = random.Random(seed)
    side = random.Random(f"{seed}:device")  # its own stream: drawing devices changes no other draw
    weights = [(p, p.share) for p in PERSONAS if personas is None or p.name in personas]
    if not weights:
        raise ValueError(f"no persona named {', '.join(sorted(personas or ()))}: "
                         f"{', '.join(p.name for p in PERSONAS)}")
    records: list[dict[str, Any]] = []
    for done in range(1, visitors + 1):
        persona = rng.choices([p for p, _ in weights], [w for _, w in weights])[0]
        v = _Visitor(rng, persona, START + rng.uniform(0, DAYS * 86400), side)
        _journey(v, truth)
        if labels is not None and v.id is not None:
            labels[v.id] = persona.name
        records.extend(v.records)
        if progress is not None:
            progress(done)
    records.sort(key=lambda r: r["ts"])
    yield from records


def write_jsonl(records: Iterator[dict[str, Any]], out: str | Path) -> int:
    count = 0
    with open(out, "wb") as fh:
        for rec in records:
            fh.write(line_of(rec))  # the sinks' encoder: the file reads as a jsonl sink's would
            count += 1
    return count
