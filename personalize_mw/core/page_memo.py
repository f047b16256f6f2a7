"""Filled pages remembered for visitors without a profile.

For a visitor without a profile, what :meth:`Personalizer._fill` makes of a page
is a function of the page's bytes and a few request fields: each slot's decision
is, when the slot remembers its decisions (``SlotDecider.key``), and each
rendered block is, when its template's plan keys it (``core/block_memo.py``).
So the second time the same page comes with the same values, the scan, the
decisions, the renders and the splice are skipped: one comparison of the page
with the remembered one (memcmp, under a microsecond for 50 KB) and a few dict
lookups give the filled body and what to record. The records themselves are
made fresh for each request from its own template.

Never remembered: a page where a slot's decision is not a pure function of the
request (clock, split, bandit, crowd, a strategy that raised), a block whose
render the block memo would not keep (merge fields, a decision with its own
variables, a failed render), a page whose markers are malformed. The caller
leaves the memo out where the block memo is left out (a profile, debug,
preview, enrichers).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ..rules.protocol import Decision
    from .context import RequestContext

Key = Callable[["RequestContext"], Hashable]

_MAX_BYTES = 8 * 1024 * 1024  # pages and their fillings kept, all entries together: cleared when passed
_MAX_PAGE = 512 * 1024  # a larger page is filled each time
_MAX_FILLINGS = 64  # fillings per page and per decisions: cleared when full (as the block memo)


class Filled(NamedTuple):
    """What a page became: its new body (None: unchanged), whether it varies by visitor, what was shown."""

    body: bytes | None
    varies: bool  # the page has configured slots: private, Vary: Cookie, no validators
    shown: tuple[tuple[str, Decision], ...]  # (slot, decision) of each exposure, in the page's order


class _Page:
    __slots__ = ("body", "slot_keys", "by_decisions")

    def __init__(self, body: bytes, slot_keys: tuple[Key, ...]) -> None:
        self.body = body
        self.slot_keys = slot_keys  # of the page's configured slots, in the order they appear
        # decisions' key -> (the rendered templates' keys, {their values -> Filled})
        self.by_decisions: dict[Hashable, tuple[tuple[Key, ...], dict[Hashable, Filled]]] = {}


def _values(keys: tuple[Key, ...], ctx: RequestContext) -> Hashable:
    return tuple([key(ctx) for key in keys])


class PageMemo:
    def __init__(self) -> None:
        self._pages: dict[tuple[int, str | None], _Page] = {}
        self._bytes = 0

    def get(self, body: bytes, codec: str | None, ctx: RequestContext) -> Filled | None:
        page = self._pages.get((len(body), codec))
        if page is None or (page.body is not body and page.body != body):
            return None
        found = page.by_decisions.get(_values(page.slot_keys, ctx))
        if found is None:
            return None
        render_keys, fillings = found
        return fillings.get(_values(render_keys, ctx))

    def remember(self, body: bytes, codec: str | None, ctx: RequestContext, slot_keys: tuple[Key, ...],
                 render_keys: tuple[Key, ...], filled: Filled) -> None:
        """Keep ``filled`` for this page and the values ``ctx`` gives ``slot_keys`` and ``render_keys``."""
        size = len(body)
        if size > _MAX_PAGE:
            return
        added = len(filled.body) if filled.body is not None else 0
        page = self._pages.get((size, codec))
        if page is None or page.slot_keys != slot_keys or (page.body is not body and page.body != body):
            page = _Page(body, slot_keys)  # another page of the same length takes the place
            added += size
        if self._bytes + added > _MAX_BYTES:
            self._pages.clear()
            self._bytes = 0
            page = _Page(body, slot_keys)
            added = size + (len(filled.body) if filled.body is not None else 0)
        self._pages[(size, codec)] = page
        decided = _values(slot_keys, ctx)
        by_decisions = page.by_decisions
        found = by_decisions.get(decided)
        if found is None or found[0] != render_keys:
            if len(by_decisions) >= _MAX_FILLINGS:
                by_decisions.clear()
            found = by_decisions[decided] = (render_keys, {})
        fillings = found[1]
        if len(fillings) >= _MAX_FILLINGS:
            fillings.clear()
        fillings[_values(render_keys, ctx)] = filled
        self._bytes += added
