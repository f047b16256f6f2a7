"""The same site in Django: personalize_mw's Django integration in one line (``settings.MIDDLEWARE``).

    .venv/bin/python example_site/django_site/manage.py runserver   # http://127.0.0.1:8002 (`make demo-django`)

The pages (``example_site/pages.py``), the Jinja2 templates and the rules are
the Starlette site's; Django renders the templates through its own Jinja2
backend with the ``{% personalize %}`` extension (settings.TEMPLATES).
"""
