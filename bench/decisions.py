"""Decision cost per slot, per strategy, with the rules strategy as the reference.

    .venv/bin/python bench/decisions.py            # the figures in docs/performance.md ("Decisions")
    .venv/bin/python bench/decisions.py --quick    # a smoke run; figures not meaningful

What is timed is ``SlotDecider.decide(ctx, visitor, now)``, what the core
calls once per slot on a page: the strategy chain and the experiment tagging,
not rendering (bench/overhead.py measures whole requests). Each row builds its
slot from a YAML-shaped dict through ``load_config``, as a site would, with a
returning visitor (consent, ten pages read) and a request prebuilt outside the
timing. Learning strategies are fed first, off the clock, so the timed path is
the warm one: state store answers come from the in-process cache (TTL 1 s)
and the background refresh is not on the request path.

Figures: each row is calibrated so one batch takes about 20 ms; rows run
interleaved, rotating the order from round to round (the machine is shared);
the figure is the median over rounds of a batch's mean ns per decision.

Adding a strategy is one :class:`Row` in :data:`ROWS`: a name, a target in
µs, and a function returning (slot decider, request context, visitor).
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.dont_write_bytecode = True  # nothing written into bench/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from personalize_mw import load_config  # noqa: E402
from personalize_mw.core.context import RequestContext  # noqa: E402
from personalize_mw.core.visitor import Profile  # noqa: E402
from personalize_mw.rules.engine import compiled_slots  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
NOW = time.time()
Setup = tuple[Any, RequestContext, Profile]  # slot decider, request, visitor


@dataclass
class Row:
    name: str
    target_us: float
    setup: Callable[[bool], Setup]  # quick -> what to time


def _ctx(path: str, query: str = "") -> RequestContext:
    return RequestContext("GET", "https", "example.com", path, query,
                          {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120", "accept-language": "de-DE,de",
                           "referer": "https://www.linkedin.com/feed", "cf-ipcountry": "DE"})


def _visitor(paths: list[str]) -> Profile:
    return Profile("bench-visitor-0000000001", visits=3, first_seen=int(NOW - 9 * 86400),
                   last_seen=int(NOW - 60), paths=list(paths), goals=["whitepaper"])


def _slot(config: dict[str, Any], name: str) -> Any:
    loaded = load_config({"secret_keys": [SECRET], "sink": "jsonl:/dev/null", **config})
    return compiled_slots(loaded).slots[name]


# ---------------------------------------------------------------- rules (the reference)

def _rules(quick: bool) -> Setup:
    config = {
        "segments": {"pricing_intent": {"viewed": {"path": "/pricing", "times": 2}},
                     "customer": {"goal_completed": "signup"},
                     "linkedin": {"any": [{"utm_source": "linkedin"},
                                          {"referrer_host": {"matches": r"(^|\.)linkedin\.com$"}}]}},
        "goals": {"signup": {"path": "/thanks"}},
        "slots": {"hero": {"rules": [
            {"if": "customer", "variant": "welcome-back", "template": "<h1>Welcome back</h1>"},
            {"if": "pricing_intent", "variant": "pricing", "template": "<h1>Plans</h1>"},
            {"if": {"all": [{"device": "desktop"}, {"language": "fr"}]}, "variant": "fr", "template": "<h1>Bonjour</h1>"},
            {"if": "linkedin", "variant": "linkedin", "template": "<h1>Hello {{ request.country }}</h1>"},
        ]}},
    }
    return _slot(config, "hero"), _ctx("/", "utm_source=linkedin"), _visitor(["/", "/blog/a", "/pricing"])


# ---------------------------------------------------------------- bandit

def _bandit(quick: bool) -> Setup:
    config = {
        "goals": {"signup": {"path": "/thanks"}},
        "slots": {"cta": {"strategy": "bandit", "bandit": {"goal": "signup", "min_exposures": 100},
                          "variants": [{"variant": v, "template": f"<a href='/signup'>{v}</a>"}
                                       for v in ("trial", "demo", "pricing")]}},
    }
    slot = _slot(config, "cta")
    bandit = slot.strategies[0]
    store = bandit.store
    for arm, n, s in (("trial", 5000, 250), ("demo", 5000, 300), ("pricing", 5000, 200)):
        store.add(bandit.key, f"n:{arm}", n)
        store.add(bandit.key, f"s:{arm}", s)
    store.flush()
    store.cache_ttl_s = 3600.0  # a timed batch must not straddle a refresh; the refresh is off-path anyway
    store.max_stale_s = 3600.0
    return slot, _ctx("/pricing"), _visitor(["/", "/pricing"])


# ---------------------------------------------------------------- crowd, 10,000-item catalog

CATALOG = 10_000


def _crowd(quick: bool) -> Setup:
    paths = [f"/articles/{i:05d}" for i in range(CATALOG)]
    config = {"slots": {"related": {"strategy": "crowd", "crowd": {
        "count": 5, "paths": ["/articles/"],
        "template": "<ul>{% for item in items %}<li><a href='{{ item.url }}'>{{ item.title }}</a></li>{% endfor %}</ul>",
        "catalog": [{"url": p, "title": f"Article {p[-5:]}", "tags": ["t"]} for p in paths]}}}}
    slot = _slot(config, "related")
    crowd = slot.strategies[0]
    rng = random.Random(1)
    weights = [1.0 / (rank + 1) for rank in range(CATALOG)]  # Zipf-like popularity
    readers = 500 if quick else 20_000
    for i in range(readers):  # visitors read a few articles each, off the clock
        reader = Profile(f"reader-{i}")
        for path in rng.choices(paths, weights, k=rng.randint(2, 6)):
            reader.paths.append(path)
            crowd.observe_page(_ctx(path), reader, None, NOW)
        if i % 1000 == 999:
            crowd.store.flush()
    crowd.store.flush()
    crowd.store.cache_ttl_s = crowd.store.max_stale_s = 3600.0
    here = paths[3]
    # A visitor who has read ten articles, among them the ones most read with this one.
    top = [url for url, _ in (crowd.store.backend.top(f"crowd:co:{here}", 5))]
    visitor = _visitor([*top, *paths[10:15], here][-10:])
    return slot, _ctx(here), visitor


# ---------------------------------------------------------------- journey stages

def _journey(quick: bool) -> Setup:
    config = {
        "goals": {"signup": {"path": "/thanks"}, "trial": {"path": "/trial/ok"}},
        "journey": {"stages": [
            {"name": "awareness"},
            {"name": "consideration", "if": {"any": [{"visits": {"gte": 2}}, {"viewed": {"prefix": "/guides/"}}]}},
            {"name": "decision", "if": {"viewed": {"prefix": "/pricing"}}},
            {"name": "customer", "if": {"goal_completed": "signup"}},
        ]},
        "slots": {"cta": {"strategy": "journey", "stages": {
            "awareness": {"variant": "guide", "template": "<a href='/guides/start'>Guide</a>", "content": "/guides/start"},
            "consideration": {"variant": "pricing", "template": "<a href='/pricing'>Plans</a>", "content": "/pricing"},
            "decision": [{"variant": "trial", "template": "<a href='/trial'>Try</a>", "goal": "trial"},
                         {"variant": "demo", "template": "<a href='/demo'>Demo</a>", "content": "/demo"}],
            "customer": {"variant": "refer", "template": "<a href='/refer'>Refer</a>"},
        }}},
    }
    # At the decision stage, the trial CTA already used: the journey walks to the demo.
    visitor = _visitor(["/", "/blog/a", "/pricing"])
    visitor.goals.append("trial")
    return _slot(config, "cta"), _ctx("/blog/b"), visitor


# ---------------------------------------------------------------- weighted split with a holdout

def _split(quick: bool) -> Setup:
    config = {"slots": {"hero": {"holdout": 0.1, "experiment": "hero-2026-11", "variants": [
        {"variant": v, "weight": w, "template": f"<h1>{v}</h1>"} for v, w in (("a", 1), ("b", 1), ("c", 2))]}}}
    return _slot(config, "hero"), _ctx("/"), _visitor(["/"])


ROWS: list[Row] = [
    Row("rules (reference)", 3.0, _rules),
    Row("journey (4 stages)", 5.0, _journey),
    Row("split, 3 weighted variants + holdout", 5.0, _split),
    Row("bandit", 5.0, _bandit),
    Row(f"crowd, {CATALOG:,}-item catalog", 20.0, _crowd),
]


def _batch(decide: Callable[..., Any], ctx: RequestContext, visitor: Profile, n: int) -> float:
    now = NOW
    start = time.perf_counter_ns()
    for _ in range(n):
        decide(ctx, visitor, now)
    return (time.perf_counter_ns() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few rounds, figures not meaningful")
    args = parser.parse_args()
    rounds = 3 if args.quick else 31
    setups = []
    for row in ROWS:
        slot, ctx, visitor = row.setup(args.quick)
        decision = slot.decide(ctx, visitor, NOW)
        if decision is None or decision.default:  # a row must time a real decision, not a fallback
            raise SystemExit(f"{row.name}: no decision; the benchmark is broken")
        if row.name.startswith("crowd") and set(i["url"] for i in decision.variables["items"]) & set(visitor.paths):
            raise SystemExit("crowd recommended a page the visitor has read")
        batch = 200
        while _batch(slot.decide, ctx, visitor, batch) * batch < (2e6 if args.quick else 20e6) and batch < 10**7:
            batch *= 2
        setups.append((row, slot.decide, ctx, visitor, batch))
    gc.collect()
    gc.freeze()
    results: dict[str, list[float]] = {row.name: [] for row, *_ in setups}
    for r in range(rounds):
        order = setups[r % len(setups):] + setups[: r % len(setups)]
        for row, decide, ctx, visitor, batch in order:
            results[row.name].append(_batch(decide, ctx, visitor, batch))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip() or "?"
    print(f"decisions per slot at {commit}, CPython {platform.python_version()}, {rounds} rounds"
          + (" (quick: not meaningful)" if args.quick else ""))
    print("| strategy | µs per decision | target µs | × rules | result |")
    print("|---|---:|---:|---:|---|")
    reference = statistics.median(results[ROWS[0].name])
    for row, *_ in setups:
        figure = statistics.median(results[row.name])
        verdict = "PASS" if figure / 1000 <= row.target_us else "MISS"
        print(f"| {row.name} | {figure / 1000:.2f} | {row.target_us:g} | {figure / reference:.1f} | {verdict} |")


if __name__ == "__main__":
    main()
