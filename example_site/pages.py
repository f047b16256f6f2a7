"""The site's pages, once for every framework: which URL shows which template, with what.

Each page is a function from a :class:`Visit` (what the framework parsed out of
the request) to an :data:`Outcome` (a page to render, a redirect, a file).
``app.py`` (Starlette), ``flask_app.py`` (Flask) and ``django_site`` (Django)
register :data:`ROUTES` with their own router and turn outcomes into their own
responses, so the three demos are the same site.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .content import PLAN_KEYS, POSTS_BY_SLUG
from .whitepaper import FILENAME, benchmark_pdf


@dataclass(frozen=True, slots=True)
class Visit:
    method: str
    query: Mapping[str, str]
    form: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)  # from the route's <name> parts


@dataclass(frozen=True, slots=True)
class Page:
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    status: int = 200
    # Merge fields for the variant templates (personalize_mw.context): visitor.traits.<name>.
    traits: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Redirect:
    location: str
    status: int = 303


@dataclass(frozen=True, slots=True)
class Download:
    body: bytes
    media_type: str
    filename: str

    @property
    def disposition(self) -> str:
        """The Content-Disposition header: save as ``filename``."""
        return f'attachment; filename="{self.filename}"'


Outcome = Page | Redirect | Download
NOT_FOUND = Page("not_found.html", status=404)


# The accounts a sales e-mail's links name (/?account=acme); a real site asks its CRM here.
ACCOUNTS = {"acme": "Acme Corp", "globex": "Globex"}


def home(visit: Visit) -> Outcome:
    company = ACCOUNTS.get(visit.query.get("account", ""))
    return Page("home.html", traits={"company": company} if company else {})


def blog_index(visit: Visit) -> Outcome:
    return Page("blog_index.html")


def blog_post(visit: Visit) -> Outcome:
    post = POSTS_BY_SLUG.get(visit.params["slug"])
    return NOT_FOUND if post is None else Page(f"posts/{post.slug}.html", {"post": post})


def whitepaper(visit: Visit) -> Outcome:
    return Page("whitepaper.html", {"filename": FILENAME})


def whitepaper_download(visit: Visit) -> Outcome:
    # Not a page: the middleware records the `whitepaper` goal from the path alone.
    return Download(benchmark_pdf(), "application/pdf", FILENAME)


def pricing(visit: Visit) -> Outcome:
    return Page("pricing.html")


def signup(visit: Visit) -> Outcome:
    if visit.method != "POST":
        plan = visit.query.get("plan", "team")
        return Page("signup.html", {"form": {"plan": plan if plan in PLAN_KEYS else "team"}})
    form = visit.form
    email = form.get("email", "").strip()
    plan = form.get("plan", "team")
    errors = []
    if "@" not in email or "." not in email.rpartition("@")[2] or len(email) > 254:
        errors.append("Please enter your work email address.")
    if plan not in PLAN_KEYS:
        errors.append("Please choose a plan.")
    if errors:
        return Page("signup.html", {"form": form, "errors": errors}, status=400)
    # A real site would create the account here. Post/redirect/get: the goal is
    # the thank-you page, so a reload there is not a second sign-up form post.
    return Redirect(f"/thanks?{urlencode({'plan': plan})}")


def thanks(visit: Visit) -> Outcome:
    plan = visit.query.get("plan")
    return Page("thanks.html", {"plan": plan if plan in PLAN_KEYS else None})


@dataclass(frozen=True, slots=True)
class Route:
    path: str  # Flask and Django syntax: /blog/<slug>
    name: str
    page: Callable[[Visit], Outcome]
    methods: tuple[str, ...] = ("GET",)


ROUTES: tuple[Route, ...] = (
    Route("/", "home", home),
    Route("/blog", "blog", blog_index),
    Route("/blog/<slug>", "post", blog_post),
    Route("/whitepaper", "whitepaper", whitepaper),
    Route("/whitepaper/download", "whitepaper_download", whitepaper_download),
    Route("/pricing", "pricing", pricing),
    Route("/signup", "signup", signup, ("GET", "POST")),
    Route("/thanks", "thanks", thanks),
)
