"""What every framework's version of the site shares: the rules file, the posts, the plans, the banner logic.

Kept free of any web framework so that ``app.py`` (Starlette), ``flask_app.py``
(Flask) and ``django_site`` (Django) render the same templates with the same context.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "personalize.yaml"
TEMPLATES = HERE / "templates"


def config_path() -> Path:
    """The rules the site runs with: EXAMPLE_SITE_CONFIG if set (the end-to-end test sets it), else CONFIG."""
    return Path(os.environ.get("EXAMPLE_SITE_CONFIG") or CONFIG)


# Must match `consent.cookie_name` and `consent.endpoint` in personalize.yaml.
CONSENT_COOKIE = "pmw_consent"
CONSENT_ENDPOINT = "/_personalize/consent"


@dataclass(frozen=True, slots=True)
class Post:
    slug: str
    title: str
    date: str
    summary: str


POSTS: tuple[Post, ...] = (
    Post("activation-metrics", "The three activation metrics that predict B2B revenue", "2025-03-04",
         "Sign-ups are vanity. Here is what the accounts that end up paying do in their first week."),
    Post("pricing-page-teardown", "We rewrote our pricing page five times. Here is what stuck", "2025-02-11",
         "Fewer plans, one number per plan, and the question every buyer asks answered above the fold."),
    Post("attribution-without-third-parties", "Attribution without third-party cookies", "2025-01-21",
         "First-party touchpoints, honest consent and a model you can explain to your CFO."),
)
POSTS_BY_SLUG: dict[str, Post] = {post.slug: post for post in POSTS}


@dataclass(frozen=True, slots=True)
class Plan:
    key: str
    name: str
    price: str
    blurb: str
    features: tuple[str, ...]


PLANS: tuple[Plan, ...] = (
    Plan("starter", "Starter", "0 €", "For a first look at your funnel.",
         ("1 workspace", "10k tracked accounts", "7-day history")),
    Plan("team", "Team", "49 €", "For growth teams that report revenue weekly.",
         ("5 workspaces", "Unlimited accounts", "Attribution models", "CRM sync")),
    Plan("scale", "Scale", "199 €", "For companies with several products and markets.",
         ("Everything in Team", "SSO and audit log", "Data warehouse export", "A named analyst")),
)
PLAN_KEYS = frozenset(plan.key for plan in PLANS)


def page_context(cookies: Mapping[str, str], path: str, query: str = "") -> dict[str, Any]:
    """Variables every page template reads (base.html's banner and footer)."""
    return {
        # The banner asks once; after any answer the consent cookie exists.
        "show_banner": CONSENT_COOKIE not in cookies and f"__Host-{CONSENT_COOKIE}" not in cookies,  # https
        "consent_endpoint": CONSENT_ENDPOINT,
        # Where the consent form sends the visitor back to.
        "current_path": path + (f"?{query}" if query else ""),
        "posts": POSTS,
        "plans": PLANS,
    }
