"""Shared test helpers. Each helper is named for what it builds; keep them independent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# ---------------------------------------------------------------- Django

def configure_django() -> None:
    """The suite's one Django configuration; each Django test overrides ROOT_URLCONF or PERSONALIZE_CONFIG.

    Whichever Django test module is imported first calls this; the URLconf it
    names is test_django's (its tests use the default).
    """
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        DEBUG=False, SECRET_KEY="test-only-django-key", ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="tests.test_django", INSTALLED_APPS=["personalize_mw"],
        MIDDLEWARE=["personalize_mw.django.PersonalizeMiddleware"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
        PERSONALIZE_CONFIG={"secret_keys": ["x" * 32]},
    )
    django.setup()


# ---------------------------------------------------------------- core config dicts

CORE_SECRET = "core-test-secret-0123456789abcdef"


def pure_python_stdout(code: str) -> str:
    """What ``code`` prints in a fresh interpreter where PERSONALIZE_MW_PURE_PYTHON turns the compiled pieces off."""
    env = {**os.environ, "PERSONALIZE_MW_PURE_PYTHON": "1"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


class DiscardingQueue:
    """A Personalizer's record queue that keeps nothing: for tests of what a page becomes."""

    def put(self, record: object) -> bool:
        return True

    def put_many(self, records: list[object]) -> bool:  # a page's records, as the middleware queues them
        return True

    def close(self) -> None:
        pass


def core_config_dict(sink_path: Path, **overrides: Any) -> dict[str, Any]:
    """A minimal valid config dict whose JSONL sink lives at ``sink_path``.

    Top-level keys in ``overrides`` replace the defaults; delivery flushes fast
    so tests that read the sink do not wait long.
    """
    config: dict[str, Any] = {
        "secret_keys": [CORE_SECRET],
        "sink": f"jsonl:{sink_path}",
        "delivery": {"queue_size": 1000, "flush_interval_s": 0.05, "shutdown_timeout_s": 5},
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_core_config(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``make_core_config(**overrides)`` -> config dict with a sink in this test's tmp_path."""

    def make(**overrides: Any) -> dict[str, Any]:
        return core_config_dict(tmp_path / "touchpoints.jsonl", **overrides)

    return make


@pytest.fixture(scope="session")
def core_config_factory() -> Callable[..., dict[str, Any]]:
    """:func:`core_config_dict` for module-scoped fixtures (hypothesis tests share one app)."""
    return core_config_dict


# ---------------------------------------------------------------- adapter configs (ASGI/WSGI/consent tests)

ADAPTER_CONSENT = "pmw_consent=analytics=1&personalization=1&advertising=0"  # a Cookie header part
ADAPTER_PAGE = (
    b"<html><body><h1>Shop</h1>"
    b"<!-- personalize:hero --><p>Default hero</p><!-- /personalize:hero -->"
    b"<footer>end</footer></body></html>"
)
# The welcome variant is non-ASCII on purpose: Content-Length must count bytes.
ADAPTER_WELCOME = "<p>Grüße aus Köln</p>".encode()


@dataclass
class AdapterSetup:
    """Config dicts for the adapter tests, with their JSONL sink in the test's tmp_path."""

    sink: Path

    def config(self, **overrides: Any) -> dict[str, Any]:
        """hero: ``?variant=broken`` fails to render, anything else gets ``welcome``; goal ``signup``."""
        config = core_config_dict(
            self.sink,
            slots={"hero": {"rules": [
                {"if": {"query.variant": "broken"}, "variant": "broken", "template": "{{ 1 // 0 }}"},
                {"if": {"path_prefix": "/"}, "variant": "welcome", "id": "hello",
                 "template": ADAPTER_WELCOME.decode()},
            ]}},
            goals={"signup": {"path": "/signup", "value": 10}},
        )
        config.update(overrides)
        return config

    def records(self, core: Any) -> list[dict[str, Any]]:
        """Close ``core``'s queue (the shutdown flush) and read what reached the file."""
        core.queue.close()
        if not self.sink.exists():
            return []
        return [json.loads(line) for line in self.sink.read_text("utf-8").splitlines()]


@pytest.fixture
def adapter_setup(tmp_path: Path) -> AdapterSetup:
    return AdapterSetup(tmp_path / "adapter-touchpoints.jsonl")
