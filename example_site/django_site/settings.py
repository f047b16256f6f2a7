"""Settings of the Django example: the two personalize_mw lines are marked."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-django-example-key-change-me")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "example_site.django_site.urls"
INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "personalize_mw",  # personalize_mw: the {% load personalize %} tag
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "personalize_mw.django.PersonalizeMiddleware",  # personalize_mw: the one line
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE_DIR / "templates"],
    "APP_DIRS": True,
}]
PERSONALIZE_CONFIG = os.environ.get("PERSONALIZE_CONFIG", str(BASE_DIR.parent / "personalize.yaml"))
STATIC_URL = "static/"
USE_TZ = True
