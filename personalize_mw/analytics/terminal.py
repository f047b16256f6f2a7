"""Terminal tables that stay readable at any width: too wide, a table is stacked, never squeezed.

rich fits a table that is wider than the terminal by shrinking the columns that
may wrap and cutting the rest with an ellipsis: at 80 columns the row labels
went first (``hero:…``, or no channel column at all). Here the columns are
instead dealt into as many tables as it takes, one under the other, each
starting with the row label, so every figure is shown whole beside the name it
belongs to. A table that fits is one table, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_EDGE = 1      # the table's left border
_PER_COLUMN = 3  # a column's padding (one each side) and its right border


def console() -> Any:
    """The commands' console: the terminal's width, else ``COLUMNS``, else 80 (rich's rule, piped or not)."""
    from rich.console import Console

    return Console()


@dataclass
class Grid:
    """A table's content before it is laid out: the label column, the other columns, the rows."""
    title: str
    label: str                      # the header of the row-label column
    headers: Sequence[str]
    rows: list[tuple[str, Sequence[str]]] = field(default_factory=list)  # (label, cells; rich markup allowed)
    footer: tuple[str, Sequence[str]] | None = None                       # a total row, below a rule
    left: frozenset[str] = frozenset()  # headers whose column is left-aligned (the rest: right)

    def add_row(self, label: str, *cells: str) -> None:
        self.rows.append((label, cells))


def _length(markup: str) -> int:
    from rich.text import Text

    return Text.from_markup(markup).cell_len


def _plain(text: str) -> str:
    """A header as it is written: "[always-valid 95 %]" is not rich markup."""
    from rich.markup import escape

    return escape(text)


def tables(grid: Grid, width: int) -> list[Any]:
    """``grid`` as rich Tables at most ``width`` wide: one if it fits, else its columns stacked."""
    from rich.table import Table

    every = grid.rows + ([grid.footer] if grid.footer else [])
    label_width = max([_length(_plain(grid.label))] + [_length(label) for label, _ in every])
    widths = [max([_length(_plain(header))] + [_length(cells[i]) for _, cells in every])
              for i, header in enumerate(grid.headers)]
    room = width - _EDGE - label_width - _PER_COLUMN
    groups: list[list[int]] = [[]]
    used = 0
    for i, w in enumerate(widths):
        if groups[-1] and used + w + _PER_COLUMN > room:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += w + _PER_COLUMN
    out = []
    for n, group in enumerate(groups):
        title = _plain(grid.title) if n == 0 else _plain(f"{grid.title} (continued)") if grid.title else None
        table = Table(title=title, title_justify="left")
        # The label wraps only when it alone leaves no room (a very long page path): it is never cut.
        table.add_column(_plain(grid.label), overflow="fold", min_width=min(label_width, max(8, width // 3)))
        for i in group:
            header = grid.headers[i]
            table.add_column(_plain(header), justify="left" if header in grid.left else "right", no_wrap=True)
        for label, cells in grid.rows:
            table.add_row(label, *(cells[i] for i in group))
        if grid.footer:
            table.add_section()
            table.add_row(grid.footer[0], *(grid.footer[1][i] for i in group))
        out.append(table)
    return out


def show(out: Any, grid: Grid) -> None:
    """Print ``grid`` on the console ``out``, stacked to its width."""
    for table in tables(grid, out.width):
        out.print(table)
