"""Where enricher types come from: built-ins, entry points ``personalize_mw.enrichers``, ``python:module:Class``."""

from __future__ import annotations

from ..plugins import PluginRegistry, UnknownPlugin
from .protocol import EnricherFactory

ENTRY_POINT_GROUP = "personalize_mw.enrichers"

BUILTINS: dict[str, str] = {
    "http": "personalize_mw.enrich.http:HttpEnricher",
    "geoip": "personalize_mw.enrich.geoip:GeoIPEnricher",
    "company": "personalize_mw.enrich.company:CompanyEnricher",
}


class UnknownEnricher(UnknownPlugin):
    """An enricher type that no built-in, registration, entry point or import provides."""


ENRICHERS: PluginRegistry[EnricherFactory] = PluginRegistry("enricher type", ENTRY_POINT_GROUP, BUILTINS,
                                                            UnknownEnricher)
register = ENRICHERS.register
resolve = ENRICHERS.resolve
