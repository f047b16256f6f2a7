"""Acme Analytics, the example site: Starlette + Jinja2, personalized by personalize_mw.

    .venv/bin/python -m uvicorn example_site.app:app      # what `make demo` runs

The integration is the one ``add_middleware`` line in :func:`create_app`; the
templates mark the personalized blocks with ``{% personalize "hero" %}``, and
``personalize.yaml`` beside this file holds the rules. Set EXAMPLE_SITE_CONFIG
to run the site with another rules file (the end-to-end test does).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from personalize_mw import Config, PersonalizeMiddleware
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.jinja import PersonalizeExtension

from .content import PLAN_KEYS, POSTS_BY_SLUG, page_context
from .whitepaper import FILENAME, benchmark_pdf

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "personalize.yaml"

environment = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    extensions=[PersonalizeExtension],
)
templates = Jinja2Templates(env=environment)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    context = {**page_context(request.cookies, request.url.path, request.url.query), **context}
    return templates.TemplateResponse(request, name, context, status_code=status_code)


async def home(request: Request) -> Response:
    return render(request, "home.html")


async def blog_index(request: Request) -> Response:
    return render(request, "blog_index.html")


async def blog_post(request: Request) -> Response:
    post = POSTS_BY_SLUG.get(request.path_params["slug"])
    if post is None:
        raise HTTPException(404)
    return render(request, f"posts/{post.slug}.html", post=post)


async def whitepaper(request: Request) -> Response:
    return render(request, "whitepaper.html", filename=FILENAME)


async def whitepaper_download(request: Request) -> Response:
    # Not a page: the middleware records the `whitepaper` goal from the path alone.
    return Response(benchmark_pdf(), media_type="application/pdf",
                    headers={"content-disposition": f'attachment; filename="{FILENAME}"'})


async def pricing(request: Request) -> Response:
    return render(request, "pricing.html")


def _form(body: bytes) -> Mapping[str, str]:
    # A urlencoded form read by hand: the site needs no multipart parser.
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


async def signup(request: Request) -> Response:
    if request.method == "GET":
        plan = request.query_params.get("plan", "team")
        return render(request, "signup.html", form={"plan": plan if plan in PLAN_KEYS else "team"})
    form = _form(await request.body())
    email = form.get("email", "").strip()
    plan = form.get("plan", "team")
    errors = []
    if "@" not in email or "." not in email.rpartition("@")[2] or len(email) > 254:
        errors.append("Please enter your work email address.")
    if plan not in PLAN_KEYS:
        errors.append("Please choose a plan.")
    if errors:
        return render(request, "signup.html", status_code=400, form=form, errors=errors)
    # A real site would create the account here. Post/redirect/get: the goal is
    # the thank-you page, so a reload there is not a second sign-up form post.
    return RedirectResponse(f"/thanks?{urlencode({'plan': plan})}", status_code=303)


async def thanks(request: Request) -> Response:
    plan = request.query_params.get("plan")
    return render(request, "thanks.html", plan=plan if plan in PLAN_KEYS else None)


async def not_found(request: Request, exc: Exception) -> Response:
    return render(request, "not_found.html", status_code=404)


routes = [
    Route("/", home),
    Route("/blog", blog_index),
    Route("/blog/{slug}", blog_post),
    Route("/whitepaper", whitepaper),
    Route("/whitepaper/download", whitepaper_download),
    Route("/pricing", pricing),
    Route("/signup", signup, methods=["GET", "POST"]),
    Route("/thanks", thanks),
]


def create_app(config: "str | Path | dict[str, Any] | Config" = CONFIG, *,
               personalizer: Personalizer | None = None) -> Starlette:
    """The site with its rules; tests pass their own config (a YAML path, dict or Config),
    the simulation its own Personalizer (with a simulated clock)."""
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.add_middleware(PersonalizeMiddleware, config=config, personalizer=personalizer)
    return app


app = create_app(os.environ.get("EXAMPLE_SITE_CONFIG") or CONFIG)
