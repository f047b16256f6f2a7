#!/usr/bin/env python
"""Run from the repository root: .venv/bin/python example_site/django_site/manage.py runserver

``runserver`` listens on 8002 unless told otherwise: `make demo` has 8000, the Flask version 8001.
"""
import os
import sys
from pathlib import Path

PORT = "8002"

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.django_site.settings")
    from django.core.management import execute_from_command_line
    from django.core.management.commands import runserver

    runserver.Command.default_port = PORT
    execute_from_command_line(sys.argv)
