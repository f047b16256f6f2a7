"""Attribution results as a terminal table (rich), JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from .models import Attribution
from .terminal import Grid

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A spreadsheet must not run a cell as a formula: text starting = + - @ tab or CR gets a leading '."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _rows(results: Sequence[Attribution]) -> list[str]:
    labels = results[0].labels if results else []
    # Most credited first under the first model, so the table reads top-down.
    order = sorted(range(len(labels)), key=lambda i: (-results[0].conversions[i], labels[i])) if results else []
    return [labels[i] for i in order]


def to_json(results: Sequence[Attribution], meta: dict[str, Any]) -> str:
    return json.dumps({**meta, "models": {r.model: r.as_dict() for r in results}}, indent=2, ensure_ascii=False)


def to_csv(results: Sequence[Attribution], by: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([by, "model", "conversions", "value"])
    for label in _rows(results):
        for r in results:
            i = r.labels.index(label)
            writer.writerow([csv_cell(label), r.model, repr(float(r.conversions[i])), repr(float(r.value[i]))])
    return out.getvalue()


def to_grid(results: Sequence[Attribution], by: str, value: bool) -> Grid:
    """The terminal table: a row per touch, a column per model, the totals below (:mod:`.terminal`)."""
    grid = Grid("", by, [r.model for r in results])
    totals = [0.0] * len(results)
    for label in _rows(results):
        cells = []
        for k, r in enumerate(results):
            i = r.labels.index(label)
            amount = float(r.value[i] if value else r.conversions[i])
            totals[k] += amount
            cells.append(f"{amount:,.2f}")
        grid.add_row(label, *cells)
    grid.footer = ("total", [f"{t:,.2f}" for t in totals])
    return grid
