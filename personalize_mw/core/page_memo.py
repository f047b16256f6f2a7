"""Pages remembered: their blocks, and their fillings by what decides them.

A site sends the same page bytes to many visitors, so a page is scanned for
its blocks once, and found again by its length and one comparison of its
bytes (memcmp, under a microsecond for 50 KB; a scan is several).

What :meth:`Personalizer._fill` makes of a page is a function of the page's
bytes and of what decides its slots and renders their blocks:

- each slot's decision is a function of a few request fields (``SlotDecider.reads``)
  and, for a visitor with a profile, of what the profile tests of its conditions
  answer (``SlotDecider.profile_tests``: ``viewed: /pricing`` is one);
- each rendered block is a function of its template's request and visitor
  fields, when its plan keys it (``core/block_memo.py``).

So the second time the same page comes with the same values (the page's
:class:`PageKey`), the decisions, the renders and the splice are skipped: a few
dict lookups give the filled body and what to record. The records themselves
are made fresh for each request from its own template.

Never remembered: a page where a slot's decision is not such a function (clock,
split, bandit, crowd, a strategy that raised, an experiment's arm for a
visitor with an id), a block whose render the block memo would not keep (merge
fields, a decision with its own variables, a failed render), a page whose
markers are malformed. The caller asks for fillings only where the block memo
is used (no debug, preview or enrichers).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, NamedTuple

from .markers import replace_blocks

if TYPE_CHECKING:
    from ..rules.protocol import Decision
    from .context import RequestContext
    from .markers import Block
    from .visitor import Profile

Key = Callable[["RequestContext"], Hashable]
VisitorKey = Callable[["Profile | None", float], Hashable]
ProfileTest = Callable[["RequestContext", "Profile | None", float], bool]

# Bounds, all pages together; passing one clears the memo (as the block memo does). What a page
# counts is never taken back until the page goes: an estimate on the safe side.
_MAX_BYTES = 8 * 1024 * 1024  # page bytes: the pages, their splices and their fillings' bodies
_MAX_ENTRIES = 4096  # splices and fillings (their keys hold request values: counted, not sized)
_MAX_PAGE = 512 * 1024  # a larger page is scanned and filled each time
_MAX_PAGES = 256
_MAX_FILLINGS = 64  # fillings per page and decisions, decisions per page, splices per page: cleared when full


class Filled(NamedTuple):
    """What a page became: its new body (None: unchanged), whether it varies by visitor, what was shown."""

    body: bytes | None
    varies: bool  # the page has configured slots: private, Vary: Cookie, no validators
    shown: tuple[tuple[str, Decision], ...]  # (slot, decision) of each exposure, in the page's order


_WITH_PROFILE = object()  # in the key of a visitor with a profile: never equal to one without


class PageKey(NamedTuple):
    """What decides every slot of one page: the request fields they read and their profile tests."""

    request: Key
    profile_tests: tuple[ProfileTest, ...] | None  # None: a visitor with a profile is decided each time

    def of(self, ctx: RequestContext, profile: Profile | None, now: float) -> Hashable | None:
        """The key of this request's decisions; None when they are not kept."""
        if profile is None:
            return self.request(ctx)
        tests = self.profile_tests
        if tests is None:
            return None
        return _WITH_PROFILE, self.request(ctx), tuple([test(ctx, profile, now) for test in tests])


class RenderKeys(NamedTuple):
    """What decides the rendered blocks of one filling: their templates' request and visitor fields."""

    request: tuple[Key, ...]
    visitor: tuple[VisitorKey, ...]

    def of(self, ctx: RequestContext, profile: Profile | None, now: float) -> Hashable:
        values = tuple([key(ctx) for key in self.request])
        if profile is None or not self.visitor:  # without a profile the visitor fields are constants
            return values
        return values, tuple([key(profile, now) for key in self.visitor])


class Page:
    """One page as the app sent it: its blocks, and its fillings by what decides them."""

    __slots__ = ("body", "blocks", "key", "decision_key", "keyed", "by_decisions", "spliced", "size", "entries")

    def __init__(self, body: bytes, blocks: list[Block], key: tuple[int, str | None]) -> None:
        self.body = body
        self.blocks = blocks  # read only: shared by every request for this page
        self.key = key  # (length, charset to re-encode to): where the memo keeps it
        self.decision_key: PageKey | None = None  # None: never remembered (once ``keyed``)
        self.keyed = False  # decision_key is made, from the config's slots, when the page is first filled
        # decisions' key -> (the rendered templates' keys, {their values -> Filled})
        self.by_decisions: dict[Hashable, tuple[RenderKeys, dict[Hashable, Filled]]] = {}
        self.spliced: dict[tuple[tuple[int, bytes], ...], bytes] = {}  # the blocks' new bytes -> the new page
        self.size, self.entries = len(body), 0  # what the memo counts for it

    def filled(self, decided: Hashable, ctx: RequestContext, profile: Profile | None, now: float) -> Filled | None:
        """What this page became for the decisions' key ``decided`` (``decision_key.of``), if kept."""
        found = self.by_decisions.get(decided)
        if found is None:
            return None
        render_keys, fillings = found
        return fillings.get(render_keys.of(ctx, profile, now))


class PageMemo:
    def __init__(self) -> None:
        self._pages: dict[tuple[int, str | None], Page] = {}
        self._bytes = self._entries = 0

    def page(self, body: bytes, codec: str | None, scan: Callable[[bytes], list[Block]]) -> Page:
        """The page ``body`` is, scanned once (``scan`` may raise MarkerError: then nothing is kept)."""
        key = (len(body), codec)
        page = self._pages.get(key)
        if page is not None and (page.body is body or page.body == body):
            return page
        page = Page(body, scan(body), key)
        # Kept only as bytes: a bytearray the app reuses would change under the memo.
        if key[0] <= _MAX_PAGE and type(body) is bytes:
            old = self._pages.pop(key, None)  # another page of the same length takes the place
            if old is not None:
                self._bytes -= old.size
                self._entries -= old.entries
            if self._bytes + page.size > _MAX_BYTES or len(self._pages) >= _MAX_PAGES:
                self._clear()
            self._pages[key] = page
            self._bytes += page.size
        return page

    def splice(self, page: Page, replacements: dict[int, bytes], keep: bool = True) -> bytes:
        """The page with these blocks' contents replaced: made once per distinct contents (visitors with
        a profile see the same few variants too); ``keep``: False for contents made for one person."""
        key = tuple(replacements.items())
        spliced = page.spliced.get(key)
        if spliced is None:
            spliced = replace_blocks(page.body, replacements, page.blocks)
            if keep and self._kept(page, len(spliced)):
                if len(page.spliced) >= _MAX_FILLINGS:
                    page.spliced = {}
                page.spliced[key] = spliced
        return spliced

    def remember(self, page: Page, decided: Hashable, render_keys: RenderKeys, ctx: RequestContext,
                 profile: Profile | None, now: float, filled: Filled) -> None:
        """Keep ``filled`` for ``page``, the decisions' key ``decided`` and the values of ``render_keys``."""
        if not self._kept(page, len(filled.body) if filled.body is not None else 0):
            return
        by_decisions = page.by_decisions
        found = by_decisions.get(decided)
        if found is None or found[0] != render_keys:
            if len(by_decisions) >= _MAX_FILLINGS:
                by_decisions.clear()
            found = by_decisions[decided] = (render_keys, {})
        fillings = found[1]
        if len(fillings) >= _MAX_FILLINGS:
            fillings.clear()
        fillings[render_keys.of(ctx, profile, now)] = filled

    def _kept(self, page: Page, added: int) -> bool:
        """Count ``added`` bytes and one entry for ``page``; False if it is not (or no longer) kept."""
        if self._pages.get(page.key) is not page:  # too large to keep, or gone already
            return False
        if self._bytes + added > _MAX_BYTES or self._entries >= _MAX_ENTRIES:  # all but this page go
            self._clear()
            page.by_decisions, page.spliced, page.size, page.entries = {}, {}, len(page.body), 0
            self._pages[page.key] = page
            self._bytes = page.size
        page.size += added
        page.entries += 1
        self._bytes += added
        self._entries += 1
        return True

    def _clear(self) -> None:
        self._pages.clear()
        self._bytes = self._entries = 0
