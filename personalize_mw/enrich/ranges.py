"""A CSV of IP ranges, one company (or any record) per range, looked up by bisection.

A header row, then either a ``network`` column (``198.51.100.0/24``) or
``start_ip`` and ``end_ip`` columns (inclusive), and any other columns, which make
the record (an empty cell is no value). IPv4 and IPv6 rows may be mixed. Ranges
must not overlap: a file where they do is refused with both lines named, because
which one should win is the provider's knowledge, not ours.
"""

from __future__ import annotations

import bisect
import csv
import ipaddress
from pathlib import Path
from typing import Any

from ..core.ip import IPAddress
from ..errors import ConfigError
from .protocol import EnricherSpec

_RANGE_COLUMNS = frozenset({"network", "start_ip", "end_ip"})


class RangeTable:
    """Sorted, non-overlapping [start, end] integer ranges per IP version."""

    def __init__(self, rows: dict[int, list[tuple[int, int, dict[str, Any], int]]]) -> None:
        self._starts = {v: [r[0] for r in rs] for v, rs in rows.items()}
        self._ends = {v: [r[1] for r in rs] for v, rs in rows.items()}
        self._records = {v: [r[2] for r in rs] for v, rs in rows.items()}

    def get(self, ip: IPAddress) -> dict[str, Any] | None:
        starts = self._starts.get(ip.version)
        if not starts:
            return None
        number = int(ip)
        index = bisect.bisect_right(starts, number) - 1
        if index >= 0 and number <= self._ends[ip.version][index]:
            return self._records[ip.version][index]
        return None


def _bounds(row: dict[str, str]) -> tuple[IPAddress, IPAddress]:
    if row.get("network"):
        network = ipaddress.ip_network(row["network"].strip(), strict=False)
        return network.network_address, network.broadcast_address
    start = ipaddress.ip_address(row["start_ip"].strip())
    end = ipaddress.ip_address(row["end_ip"].strip())
    if start.version != end.version or end < start:  # type: ignore[operator]
        raise ValueError(f"{start} .. {end} is not a range")
    return start, end


def load_ranges(spec: EnricherSpec, path: Path) -> RangeTable:
    here = spec.here("database")
    rows: dict[int, list[tuple[int, int, dict[str, Any], int]]] = {4: [], 6: []}
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.DictReader(file)
            columns = set(reader.fieldnames or ())
            if "network" not in columns and not {"start_ip", "end_ip"} <= columns:
                raise ConfigError([(here, f"{path}: the header needs a 'network' column or "
                                    "'start_ip' and 'end_ip' columns")])
            for row in reader:
                try:
                    start, end = _bounds(row)
                except (ValueError, AttributeError) as exc:
                    raise ConfigError([(here, f"{path} line {reader.line_num}: {exc}")]) from None
                record = {k: (v.strip() or None) for k, v in row.items()
                          if k is not None and k not in _RANGE_COLUMNS and isinstance(v, str)}
                rows[start.version].append((int(start), int(end), record, reader.line_num))
    except OSError as exc:
        raise ConfigError([(here, f"cannot read {path}: {exc.strerror or exc}")]) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError([(here, f"{path} is not a UTF-8 CSV file: {exc}")]) from None
    for version_rows in rows.values():
        version_rows.sort(key=lambda r: r[0])
        for before, after in zip(version_rows, version_rows[1:], strict=False):
            if after[0] <= before[1]:
                raise ConfigError([(here, f"{path}: the ranges of lines {before[3]} and {after[3]} overlap")])
    return RangeTable(rows)
