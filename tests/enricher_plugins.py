"""A third-party enricher used by tests/test_enrichment.py through type: python:module:Class."""

from __future__ import annotations

from typing import Any

from personalize_mw.enrich.protocol import EnricherSpec


class Weather:
    """Says the same weather for everyone; a plug-in uses only the public interface."""

    personal = False

    def __init__(self, spec: EnricherSpec) -> None:
        self.sky = spec.options.get("sky", "sunny")

    def lookup(self, ctx: Any, profile: Any) -> dict[str, Any]:
        return {"sky": self.sky}
