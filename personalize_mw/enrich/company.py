"""``type: company``: the company behind the client address (reverse IP), from an MMDB or a CSV of ranges.

    enrichment:
      company:
        type: company
        database: data/companies.mmdb       # or a .csv of IP ranges
        fields: {size: employees}           # our field <- the provider's key (dotted for nested)

Fields: ``company.name``, ``company.domain``, ``company.industry``, ``company.size``
(employees, a number), read from the record's keys of the same names unless
``fields:`` maps them to the provider's (``{size: metrics.employees}``). Commercial
providers ship both shapes: an MMDB whose records are maps, or a CSV with a
``network`` column (CIDR) or ``start_ip``/``end_ip`` columns and one column per
field (:mod:`.ranges`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from .ip_lookup import IpEnricher, IpOptions, database_path, dig, open_mmdb
from .protocol import EnricherSpec, Fields
from .ranges import load_ranges

if TYPE_CHECKING:
    from ..core.ip import IPAddress

FIELDS = ("name", "domain", "industry", "size")
NUMBERS = frozenset({"size"})


class CompanyOptions(IpOptions):
    fields: dict[str, str] = Field(default_factory=dict)  # our field -> the provider's key


def company(record: Any, keys: dict[str, str]) -> Fields | None:
    found = {ours: dig(record, theirs) for ours, theirs in keys.items()}
    for name in NUMBERS & found.keys():
        found[name] = _number(found[name])
    return found if any(v is not None for v in found.values()) else None


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value.replace(",", "").replace("_", ""))
        except ValueError:
            return None
    return None


class CompanyEnricher(IpEnricher):
    def __init__(self, spec: EnricherSpec) -> None:
        options = spec.parse(CompanyOptions)
        keys = {name: name for name in FIELDS} | options.fields
        self.known_fields = frozenset(keys)  # what `record:` may name
        path = database_path(spec, options.database)
        if path.suffix.lower() == ".csv":
            table = load_ranges(spec, path)
            super().__init__(lambda ip: company(table.get(ip), keys), options.cache_size)
            return
        reader = open_mmdb(spec, path)

        def find(ip: IPAddress) -> Fields | None:
            return company(reader.get(ip), keys)

        super().__init__(find, options.cache_size, reader.close)
