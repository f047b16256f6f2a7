"""Settings of the Django version of the site: the personalize_mw line is marked.

The templates are the Jinja2 ones the Starlette and Flask versions render; a
site on Django's own template language adds ``"personalize_mw"`` to
INSTALLED_APPS instead and writes ``{% load personalize %}``.
"""

import os

from jinja2 import Undefined

from example_site.content import TEMPLATES as SITE_TEMPLATES
from example_site.content import config_path

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-django-example-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"  # off: the site's own 404 page, as in the other two versions
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "example_site.django_site.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "personalize_mw.django.PersonalizeMiddleware",  # personalize_mw: the one line, above CsrfViewMiddleware
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.jinja2.Jinja2",
    "DIRS": [SITE_TEMPLATES],
    "OPTIONS": {
        "extensions": ["personalize_mw.jinja.PersonalizeExtension"],
        "undefined": Undefined,  # as the other versions render (Django picks DebugUndefined under DEBUG)
    },
}]
PERSONALIZE_CONFIG = str(config_path())  # personalize_mw: the rules
USE_TZ = True
TIME_ZONE = "UTC"  # the log lines in the same time as the touchpoints
