"""Shared test helpers. Each helper is named for what it builds; keep them independent."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

# ---------------------------------------------------------------- core config dicts

CORE_SECRET = "core-test-secret-0123456789abcdef"


def core_config_dict(sink_path: Path, **overrides: Any) -> dict[str, Any]:
    """A minimal valid config dict whose JSONL sink lives at ``sink_path``.

    Top-level keys in ``overrides`` replace the defaults; the queue flushes fast
    so tests that read the sink do not wait long.
    """
    config: dict[str, Any] = {
        "secret_keys": [CORE_SECRET],
        "sink": f"jsonl:{sink_path}",
        "queue": {"size": 1000, "flush_interval_s": 0.05, "shutdown_timeout_s": 5},
    }
    config.update(overrides)
    return config


@pytest.fixture
def make_core_config(tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """``make_core_config(**overrides)`` -> config dict with a sink in this test's tmp_path."""

    def make(**overrides: Any) -> dict[str, Any]:
        return core_config_dict(tmp_path / "touchpoints.jsonl", **overrides)

    return make
