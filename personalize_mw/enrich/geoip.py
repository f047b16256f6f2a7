"""``type: geoip``: country, region, city and time zone from a MaxMind-format City database.

    enrichment:
      geo:
        type: geoip
        database: data/GeoLite2-City.mmdb   # GeoIP2/GeoLite2 City, DB-IP City Lite, any City-shaped MMDB

Fields: ``geo.country`` (ISO 3166-1, 'US'), ``geo.region`` (the first subdivision's
ISO code, 'CA'), ``geo.region_name``, ``geo.city``, ``geo.time_zone``
('America/Los_Angeles'). Names in ``language`` (default 'en'). Nothing more
precise (no coordinates, no postal code) is taken from the record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from .ip_lookup import IpEnricher, IpOptions, database_path, dig, open_mmdb
from .protocol import EnricherSpec, Fields

if TYPE_CHECKING:
    from ..core.ip import IPAddress


FIELDS = frozenset({"country", "region", "region_name", "city", "time_zone"})


class GeoIPOptions(IpOptions):
    language: str = Field("en", pattern=r"^[A-Za-z-]{2,10}$")


def place(record: Any, language: str) -> Fields | None:
    """The fields of a City record, or None when it has none of them."""
    if not isinstance(record, dict):
        return None
    subdivisions = record.get("subdivisions")
    first = subdivisions[0] if isinstance(subdivisions, list) and subdivisions else None
    fields = {
        "country": dig(record, "country.iso_code"),
        "region": dig(first, "iso_code"),
        "region_name": dig(first, f"names.{language}"),
        "city": dig(record, f"city.names.{language}"),
        "time_zone": dig(record, "location.time_zone"),
    }
    return fields if any(v is not None for v in fields.values()) else None


class GeoIPEnricher(IpEnricher):
    def __init__(self, spec: EnricherSpec) -> None:
        options = spec.parse(GeoIPOptions)
        reader = open_mmdb(spec, database_path(spec, options.database))
        language = options.language
        self.known_fields = FIELDS  # what `record:` may name

        def find(ip: IPAddress) -> Fields | None:
            return place(reader.get(ip), language)

        super().__init__(find, options.cache_size, reader.close)
