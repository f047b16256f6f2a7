"""The same home and pricing pages in Flask: personalize_mw's WSGI integration in one line.

    .venv/bin/flask --app example_site.flask_app run --port 8001

It renders the Starlette site's templates (``templates/``) with Flask's own
Jinja2 environment plus the ``{% personalize %}`` extension, and reads the same
``personalize.yaml``. The other links on the page belong to the Starlette app.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, render_template, request

from personalize_mw import Config, PersonalizeWSGIMiddleware
from personalize_mw.jinja import PersonalizeExtension

from .content import page_context

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "personalize.yaml"


def _render(name: str) -> str:
    return render_template(name, **page_context(request.cookies, request.path,
                                                request.query_string.decode("latin-1")))


def create_app(config: "str | Path | dict[str, Any] | Config" = CONFIG) -> Flask:
    app = Flask(__name__, template_folder=str(HERE / "templates"))
    app.jinja_env.add_extension(PersonalizeExtension)
    app.add_url_rule("/", "home", lambda: _render("home.html"))
    app.add_url_rule("/pricing", "pricing", lambda: _render("pricing.html"))
    app.wsgi_app = PersonalizeWSGIMiddleware(app.wsgi_app, config=config)  # type: ignore[method-assign]
    return app


app = create_app(os.environ.get("EXAMPLE_SITE_CONFIG") or CONFIG)
