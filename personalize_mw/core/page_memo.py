"""Pages remembered: their blocks for every visitor, their fillings for visitors without a profile.

A site sends the same page bytes to many visitors, so a page is scanned for
its blocks once, and found again by its length and one comparison of its
bytes (memcmp, under a microsecond for 50 KB; a scan is several).

For a visitor without a profile, what :meth:`Personalizer._fill` makes of a page
is a function of the page's bytes and a few request fields: each slot's decision
is, when the slot remembers its decisions (``SlotDecider.key``), and each
rendered block is, when its template's plan keys it (``core/block_memo.py``).
So the second time the same page comes with the same values, the decisions,
the renders and the splice are skipped too: a few dict lookups give the
filled body and what to record. The records themselves are
made fresh for each request from its own template.

Never remembered: a page where a slot's decision is not a pure function of the
request (clock, split, bandit, crowd, a strategy that raised), a block whose
render the block memo would not keep (merge fields, a decision with its own
variables, a failed render), a page whose markers are malformed. The caller
asks for fillings only where the block memo is used (no profile, debug,
preview or enrichers).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, NamedTuple

from .markers import replace_blocks

if TYPE_CHECKING:
    from ..rules.protocol import Decision
    from .context import RequestContext
    from .markers import Block

Key = Callable[["RequestContext"], Hashable]

_MAX_BYTES = 8 * 1024 * 1024  # pages and their fillings kept, all entries together: cleared when passed
_MAX_PAGE = 512 * 1024  # a larger page is scanned and filled each time
_MAX_FILLINGS = 64  # fillings per page and per decisions: cleared when full (as the block memo)


class Filled(NamedTuple):
    """What a page became: its new body (None: unchanged), whether it varies by visitor, what was shown."""

    body: bytes | None
    varies: bool  # the page has configured slots: private, Vary: Cookie, no validators
    shown: tuple[tuple[str, Decision], ...]  # (slot, decision) of each exposure, in the page's order


class Page:
    """One page as the app sent it: its blocks, and (without a profile) its fillings by request values."""

    __slots__ = ("body", "blocks", "key", "slot_keys", "by_decisions", "spliced")

    def __init__(self, body: bytes, blocks: list[Block], key: tuple[int, str | None]) -> None:
        self.body = body
        self.blocks = blocks  # read only: shared by every request for this page
        self.key = key  # (length, charset to re-encode to): where the memo keeps it
        self.slot_keys: tuple[Key, ...] | None = None  # of the page's configured slots, once it is filled
        # decisions' key -> (the rendered templates' keys, {their values -> Filled})
        self.by_decisions: dict[Hashable, tuple[tuple[Key, ...], dict[Hashable, Filled]]] = {}
        self.spliced: dict[tuple[tuple[int, bytes], ...], bytes] = {}  # the blocks' new bytes -> the new page

    def filled(self, ctx: RequestContext) -> Filled | None:
        """What this page became for a visitor without a profile and these request values, if kept."""
        slot_keys = self.slot_keys
        if slot_keys is None:
            return None
        found = self.by_decisions.get(_values(slot_keys, ctx))
        if found is None:
            return None
        render_keys, fillings = found
        return fillings.get(_values(render_keys, ctx))


def _values(keys: tuple[Key, ...], ctx: RequestContext) -> Hashable:
    return tuple([key(ctx) for key in keys])


class PageMemo:
    def __init__(self) -> None:
        self._pages: dict[tuple[int, str | None], Page] = {}
        self._bytes = 0

    def page(self, body: bytes, codec: str | None, scan: Callable[[bytes], list[Block]]) -> Page:
        """The page ``body`` is, scanned once (``scan`` may raise MarkerError: then nothing is kept)."""
        key = (len(body), codec)
        page = self._pages.get(key)
        if page is not None and (page.body is body or page.body == body):
            return page
        page = Page(body, scan(body), key)  # another page of the same length takes the place
        if key[0] <= _MAX_PAGE:
            self._keep(page)
        return page

    def splice(self, page: Page, replacements: dict[int, bytes]) -> bytes:
        """The page with these blocks' contents replaced: made once per distinct contents (visitors with
        a profile see the same few variants too), and kept if the page is."""
        key = tuple(replacements.items())
        spliced = page.spliced.get(key)
        if spliced is None:
            spliced = replace_blocks(page.body, replacements, page.blocks)
            if self._pages.get(page.key) is page:
                self._grow(page, len(spliced))
                if len(page.spliced) >= _MAX_FILLINGS:  # the fillings hold some of them: they go too
                    page.spliced, page.by_decisions = {}, {}
                page.spliced[key] = spliced
        return spliced

    def remember(self, page: Page, ctx: RequestContext, slot_keys: tuple[Key, ...],
                 render_keys: tuple[Key, ...], filled: Filled) -> None:
        """Keep ``filled`` for ``page`` and the values ``ctx`` gives ``slot_keys`` and ``render_keys``."""
        if self._pages.get(page.key) is not page:  # too large to keep, or gone already
            return
        if page.slot_keys != slot_keys:  # the first filling (the config's slots decide which keys)
            page.slot_keys, page.by_decisions = slot_keys, {}
        by_decisions = page.by_decisions
        decided = _values(slot_keys, ctx)
        found = by_decisions.get(decided)
        if found is None or found[0] != render_keys:
            if len(by_decisions) >= _MAX_FILLINGS:
                by_decisions.clear()
            found = by_decisions[decided] = (render_keys, {})
        fillings = found[1]
        if len(fillings) >= _MAX_FILLINGS:
            fillings.clear()
        fillings[_values(render_keys, ctx)] = filled  # its body is one of page.spliced: counted there

    def _grow(self, page: Page, added: int) -> None:
        self._bytes += added
        if self._bytes > _MAX_BYTES:  # everything goes but this page, without its fillings
            page.by_decisions, page.spliced = {}, {}
            self._pages.clear()
            self._bytes = 0
            self._keep(page)

    def _keep(self, page: Page) -> None:
        size = page.key[0]
        if self._bytes + size > _MAX_BYTES:
            self._pages.clear()
            self._bytes = 0
        self._pages[page.key] = page
        self._bytes += size
