"""The same site in Flask: personalize_mw's WSGI integration in one line.

    .venv/bin/python -m example_site.flask_app      # http://127.0.0.1:8001 (what `make demo-flask` runs)

The pages (``pages.py``), the templates (``templates/``) and the rules
(``personalize.yaml``) are the Starlette site's; Flask's own Jinja2
environment renders the templates, with the ``{% personalize %}`` extension.
Set EXAMPLE_SITE_CONFIG to run the site with another rules file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, redirect, render_template, request

import personalize_mw
from personalize_mw import Config, PersonalizeWSGIMiddleware
from personalize_mw.jinja import PersonalizeExtension

from .content import CONFIG, TEMPLATES, config_path, page_context
from .pages import NOT_FOUND, ROUTES, Outcome, Page, Redirect, Visit

PORT = 8001  # beside `make demo` on 8000 and the Django version on 8002


def respond(outcome: Outcome) -> Any:
    if isinstance(outcome, Page):
        personalize_mw.context(request, **outcome.traits)
        context = page_context(request.cookies, request.path, request.query_string.decode("latin-1"))
        return render_template(outcome.template, **context, **outcome.context), outcome.status
    if isinstance(outcome, Redirect):
        return redirect(outcome.location, code=outcome.status)
    return Response(outcome.body, mimetype=outcome.media_type,
                    headers={"content-disposition": outcome.disposition})


def view(page: Callable[[Visit], Outcome]) -> Callable[..., Any]:
    def endpoint(**params: str) -> Any:
        return respond(page(Visit(request.method, request.args, request.form, params)))
    return endpoint


def create_app(config: str | Path | dict[str, Any] | Config = CONFIG) -> Flask:
    app = Flask(__name__, template_folder=str(TEMPLATES))
    app.jinja_env.add_extension(PersonalizeExtension)
    for route in ROUTES:
        app.add_url_rule(route.path, route.name, view(route.page), methods=list(route.methods))
    app.register_error_handler(404, lambda error: respond(NOT_FOUND))
    app.wsgi_app = PersonalizeWSGIMiddleware(app.wsgi_app, config=config)  # type: ignore[method-assign]
    return app


app = create_app(config_path())

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=PORT)
