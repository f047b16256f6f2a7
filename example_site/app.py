"""Acme Analytics, the example site: Starlette + Jinja2, personalized by personalize_mw.

    .venv/bin/python -m uvicorn example_site.app:app      # what `make demo` runs

The integration is the one ``add_middleware`` line in :func:`create_app`; the
templates mark the personalized blocks with ``{% personalize "hero" %}``, and
``personalize.yaml`` beside this file holds the rules. The pages themselves
(``pages.py``) and the templates are shared with the Flask and Django versions
of the site. Set EXAMPLE_SITE_CONFIG to run the site with another rules file
(the end-to-end test does).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

import personalize_mw
from personalize_mw import Config, PersonalizeMiddleware
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.jinja import PersonalizeExtension

from .content import CONFIG, TEMPLATES, config_path, page_context
from .pages import NOT_FOUND, ROUTES, Outcome, Page, Redirect, Visit

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    extensions=[PersonalizeExtension],
)
templates = Jinja2Templates(env=environment)


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    context = {**page_context(request.cookies, request.url.path, request.url.query), **context}
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def respond(request: Request, outcome: Outcome) -> Response:
    if isinstance(outcome, Page):
        personalize_mw.context(request, **outcome.traits)
        return render(request, outcome.template, outcome.status, **outcome.context)
    if isinstance(outcome, Redirect):
        return RedirectResponse(outcome.location, status_code=outcome.status)
    return Response(outcome.body, media_type=outcome.media_type,
                    headers={"content-disposition": outcome.disposition})


def _form(body: bytes) -> Mapping[str, str]:
    # A urlencoded form read by hand: the site needs no multipart parser.
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def view(page: Callable[[Visit], Outcome]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        form = _form(await request.body()) if request.method == "POST" else {}
        return respond(request, page(Visit(request.method, request.query_params, form, request.path_params)))
    return endpoint


async def not_found(request: Request, exc: Exception) -> Response:
    return respond(request, NOT_FOUND)


# pages.py writes <slug> as Flask and Django do; Starlette writes {slug}.
routes = [Route(re.sub(r"<(\w+)>", r"{\1}", route.path), view(route.page), methods=list(route.methods),
                name=route.name) for route in ROUTES]


def create_app(config: str | Path | dict[str, Any] | Config = CONFIG, *,
               personalizer: Personalizer | None = None) -> Starlette:
    """The site with its rules; tests pass their own config (a YAML path, dict or Config),
    the simulation its own Personalizer (with a simulated clock)."""
    app = Starlette(routes=routes, exception_handlers={404: not_found})
    app.add_middleware(PersonalizeMiddleware, config=config, personalizer=personalizer)
    return app


app = create_app(config_path())
