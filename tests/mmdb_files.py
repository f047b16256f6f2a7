"""Small MaxMind-format databases the enrichment tests write themselves (mmdb-writer, tests only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def write_mmdb(path: Path, networks: dict[str, dict[str, Any]], database_type: str = "GeoLite2-City") -> Path:
    """One record per CIDR network; IPv4 networks live in an IPv6 tree, as MaxMind's do."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=database_type,
                        languages=["en"], description="personalize_mw test database")
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return path


def city(country: str, region: str, region_name: str, city_name: str, time_zone: str) -> dict[str, Any]:
    """A record shaped like GeoLite2-City's."""
    return {
        "country": {"iso_code": country, "names": {"en": country}},
        "subdivisions": [{"iso_code": region, "names": {"en": region_name}}],
        "city": {"names": {"en": city_name}},
        "location": {"time_zone": time_zone, "latitude": 37.77, "longitude": -122.42},
        "postal": {"code": "94107"},
    }


GEO = {
    "198.51.100.0/24": city("US", "CA", "California", "San Francisco", "America/Los_Angeles"),
    "203.0.113.0/24": city("DE", "BE", "Berlin", "Berlin", "Europe/Berlin"),
    "2001:db8:1::/48": city("CA", "QC", "Quebec", "Montreal", "America/Toronto"),
}
COMPANIES = {
    "198.51.100.0/24": {"name": "Acme Cloud", "domain": "acme.example", "industry": "saas", "size": 450},
    "203.0.113.0/24": {"name": "Tiny Bank", "domain": "tiny.example", "industry": "fintech", "size": 40},
    "192.0.2.0/24": {"name": "Big Retail", "domain": "retail.example", "industry": "retail", "size": 9000},
}
