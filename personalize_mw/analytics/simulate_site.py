"""The simulation driven through the real example site, in-process.

The personas and journeys of :mod:`.simulate` walk example_site (``create_app``,
called in-process through :class:`.asgi_driver.ASGIDriver`: the real middleware
and routes, no server) with a copy of its rules in which

- every slot runs an experiment with ``holdout: HOLDOUT`` (the middleware
  assigns the arms and writes the exposure records itself);
- every variant template starts with ``<!-- sim:slot:variant -->``, so the
  visitor knows what it was actually shown (a held-out visitor sees the default,
  hence no marker) and converts with the true effects of exactly that;
- only the slots the simulated world models (``hero`` and ``cta``) are kept, so
  every variant shown has a designed effect (zero if not in ``TRUE_EFFECTS``);
  the others show their template defaults;
- the two rules for customers are left out: the simulated visitors leave after
  signing up, and those rules would otherwise fill the thank-you page itself.

The middleware is given the simulated clock and a seeded id generator (the
``clock`` and ``new_id`` arguments of its Personalizer), so the visits spread
over four weeks, sessions time out, ``days_since_first_visit`` grows as on a
live site, and the same seed assigns the same arms (record ids stay random).
Slower than :func:`.simulate.simulate` (about 0.3 ms per request in the
middleware and the site) and the real thing: consent banner posts, cookies,
channels, rules, sinks.
"""

from __future__ import annotations

import base64
import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import yaml

from ..config import load_config
from ..core.personalizer import Personalizer
from . import simulate as world
from .asgi_driver import ASGIDriver

ORIGIN = "http://testserver"
_MARKER = re.compile(r"<!-- sim:([A-Za-z0-9_.:-]+) -->")
_CONSENT_BODIES = {"all": {"all": True}, "analytics": {"analytics": True}, "none": None}
_CUSTOMER_RULES = {"cta-customer", "cta-thanks"}
SIMULATED_SLOTS = ("hero", "cta")
_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
_FORM = "application/x-www-form-urlencoded"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def _example_site() -> Any:
    """example_site.app: importable from the repository root, or found beside this package's checkout."""
    try:
        import example_site.app as site
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[2]
        if not (root / "example_site" / "app.py").exists():
            raise
        sys.path.insert(0, str(root))
        import example_site.app as site
    return site


def site_config(sink: Path, holdout: float | None = world.HOLDOUT, config: Path | None = None) -> dict[str, Any]:
    """The example site's rules as the simulation runs them (see the module doc), or those of ``config``
    (a personalize.yaml for example_site); ``holdout`` None keeps each slot's own holdout, or none."""
    CONFIG = config or _example_site().CONFIG
    if config is not None:
        load_config(config)  # a ConfigError naming the file and line, before the rules are rewritten below

    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("slots"), dict):
        raise ValueError(f"{CONFIG}: no slots: to simulate")
    data["sink"] = f"jsonl:{sink}"
    data["base_dir"] = str(CONFIG.parent)
    data["delivery"] = {**(data.get("delivery") or {}), "queue_size": 100_000}
    data["slots"] = {name: slot for name, slot in data["slots"].items()
                     if name in SIMULATED_SLOTS and isinstance(slot, dict)}
    for name, slot in data["slots"].items():
        if holdout is not None:
            slot["holdout"] = holdout
        slot["rules"] = [r for r in slot.get("rules") or [] if r.get("id") not in _CUSTOMER_RULES]
        for rule in slot["rules"]:
            if "template_file" in rule:
                rule["template"] = (CONFIG.parent / rule.pop("template_file")).read_text(encoding="utf-8")
            rule["template"] = f"<!-- sim:{name}:{rule['variant']} -->\n{rule['template']}"
    return data


class SimClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def time(self) -> float:
        return self.t


def _seeded_ids(ids: random.Random) -> Callable[[], str]:
    """Visitor and session ids from a seeded generator: same seed, same arms."""
    return lambda: base64.urlsafe_b64encode(ids.randbytes(16)).rstrip(b"=").decode()


class SiteVisitor:
    """A visitor of :mod:`.simulate`'s journeys whose pages come from the real site."""

    def __init__(self, browser: ASGIDriver, clock: SimClock, rng: random.Random, persona: world.Persona,
                 t: float) -> None:
        self.browser, self.clock, self.rng, self.persona = browser, clock, rng, persona
        self.landing = world._pick(rng, persona.channels)
        self.choice = world._pick(rng, world.CONSENT_CHOICES)
        self.consent = {"personalization": self.choice == "all"}
        self.shown: set[str] = set()
        self.clock.t = t
        self.referer: str | None = None
        self.query = ""
        browser.cookies.clear()  # a new browser
        body = _CONSENT_BODIES[self.choice]
        if body is not None:  # the banner's answer; "none" never posts (opt-in: no signal is no)
            browser.request("POST", "/_personalize/consent", _headers(ORIGIN + "/", origin=ORIGIN,
                            content_type="application/json"), json.dumps(body).encode())

    def new_session(self, landing: str, gap_hours: float) -> None:
        self.clock.t += gap_hours * 3600
        query, host, _, _ = world.LANDINGS[landing]
        self.query = query
        self.referer = f"https://{host}/" if host else None

    def _get(self, path: str) -> None:
        self.clock.t += self.rng.uniform(20, 180)
        url = f"{path}?{self.query}" if self.query else path
        response = self.browser.request("GET", url, _headers(self.referer))
        self.shown.update(_MARKER.findall(response.text))
        self.referer, self.query = f"{ORIGIN}{path}", ""  # the next click comes from this page

    def view(self, path: str, hero: Any = None, cta: Any = None) -> None:
        self._get(path)  # the site decides what to show; hero/cta are what the rules are expected to pick

    def download(self) -> None:
        self._get("/whitepaper/download")

    def signup(self) -> None:
        self._get("/signup?plan=team")
        self.clock.t += self.rng.uniform(20, 120)
        form = f"{ORIGIN}/signup"
        response = self.browser.request("POST", "/signup", _headers(form, origin=ORIGIN, content_type=_FORM),
                                        urlencode({"email": "sim@example.com", "plan": "team"}).encode())
        location = response.header("location")
        if response.status != 303 or location is None:
            raise RuntimeError(f"example_site answered the sign-up form with {response.status}, not 303")
        self.browser.request("GET", location, _headers(form))  # the goal page, in the same instant


def _headers(referer: str | None, *, origin: str | None = None,
             content_type: str | None = None) -> list[tuple[str, str]]:
    """What a desktop Chrome in the US sends (the channel comes from the referrer and the query)."""
    headers = [("user-agent", DESKTOP), ("accept", _ACCEPT), ("accept-language", "en-US,en;q=0.9"),
               ("cf-ipcountry", "US")]
    for name, value in (("referer", referer), ("origin", origin), ("content-type", content_type)):
        if value is not None:
            headers.append((name, value))
    return headers


def simulate_site(visitors: int, out: str | Path, *, seed: int = 7, holdout: float | None = world.HOLDOUT,
                  progress: Callable[[int], None] | None = None, segments: bool = False,
                  labels: dict[str, str] | None = None, config: Path | None = None) -> int:
    """Walk ``visitors`` synthetic visitors through example_site; its sink writes ``out``. Returns visitors.

    ``progress`` is called with the number of visitors done after each one.
    ``segments`` and ``labels`` as for :func:`.simulate.simulate` (the visitor id
    is read back from the signed cookie the site set). ``config``: the site runs
    that file's rules for the simulated slots (see :func:`site_config`).
    """
    create_app = _example_site().create_app

    out = Path(out)
    out.unlink(missing_ok=True)
    rng = random.Random(seed)
    clock = SimClock(world.START)
    core = Personalizer(load_config(site_config(out, holdout, config)), clock=clock.time,
                        new_id=_seeded_ids(random.Random(seed + 1)))
    shares = [p.share for p in world.PERSONAS]
    with ASGIDriver(create_app(personalizer=core), ORIGIN) as browser:  # its shutdown flushes the sink
        for done in range(1, visitors + 1):
            persona = rng.choices(world.PERSONAS, shares)[0]
            world._journey(SiteVisitor(browser, clock, rng, persona, world.START + rng.uniform(0, world.DAYS * 86400)),
                           world.Truth(segments=segments))
            if labels is not None:
                profile = core.codec.load(browser.cookies.get(core.codec.name_for(False)))  # http: no __Host-
                if profile is not None:
                    labels[profile.visitor_id] = persona.name
            if progress is not None:
                progress(done)
    return visitors
