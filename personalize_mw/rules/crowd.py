"""``strategy: crowd``: "people who read this also read", from consenting visitors' reading.

Learning (every page view of a visitor with personalization consent, off the
request path: :meth:`StateStore.add` only buffers): when a visitor reads a
page for the first time within the paths their cookie remembers, the page
gains one view and a co-occurrence with each of those earlier pages, both
ways. Counts decay with ``half_life_days`` by forward decay: an increment at
time t weighs 2^((t - epoch) / half_life), so older counts fade relative to
newer ones without ever rewriting stored values (orders, not magnitudes,
matter for the top k).

Deciding: the pages most read together with the current one, minus every
page the visitor has read (and the current one), that are in the catalog;
topped up with the most viewed pages (cold start), then with the ``fallback``
list (a new site, where nobody else has read anything yet: by default the YAML
catalog in the order written). The slot's template renders them as ``items``
(each: ``title``, ``url``, ``tags``).

The catalog: ``catalog:`` entries in YAML (url, title, tags), and unless
``learn_titles: false``, pages learned from their HTML ``<title>`` as they are
served (per process, bounded): only under the ``title_paths`` prefixes
(default: ``paths``), never from a request with a query string (a search page
would let anyone choose the title others are shown), and learned again at
most once an hour, so the first title served does not stay forever. Only catalog pages are ever recommended, so a
thank-you page or a search result never is; ``paths:`` (prefixes) limits
what is counted at all.
"""

from __future__ import annotations

import dataclasses
import html
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cachetools import LRUCache

from ..state import StateStore
from .protocol import BuildContext, Decision, SlotSpec
from .seen import content_path, read_paths
from .shared_state import shared_store

if TYPE_CHECKING:
    from jinja2 import Template

    from ..core.context import RequestContext
    from ..core.visitor import Profile

EPOCH = 1_767_225_600.0  # 2026-01-01 UTC: the origin of forward decay (floats last ~1000 half-lives)
VIEWS = "crowd:views"
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_TITLE_SCAN = 64 * 1024  # a <title> sits in the head
RELEARN_S = 3600.0  # a learned title is read again from the page at most this often


def co_key(path: str) -> str:
    return "crowd:co:" + path


@dataclasses.dataclass(frozen=True)
class CrowdOptions:
    count: int = 3  # items shown
    half_life_days: float = 14.0
    paths: tuple[str, ...] = ("/",)  # prefixes of the pages counted and recommended
    catalog: tuple[Mapping[str, Any], ...] = ()
    learn_titles: bool = True
    title_paths: tuple[str, ...] | None = None  # where titles are learned; default: paths
    template: str | None = None
    template_file: str | None = None
    variant: str = "crowd"
    fallback: tuple[str, ...] | None = None  # urls shown when nothing was read yet; default: the YAML catalog

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> CrowdOptions:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown crowd option(s): {', '.join(sorted(unknown))}")
        values = dict(options)
        if isinstance(values.get("paths"), str):
            values["paths"] = (values["paths"],)
        values["paths"] = tuple(values.get("paths", cls.paths))
        if isinstance(values.get("title_paths"), str):
            values["title_paths"] = (values["title_paths"],)
        if values.get("title_paths") is not None:
            values["title_paths"] = tuple(values["title_paths"])
        values["catalog"] = tuple(values.get("catalog", ()))
        if isinstance(values.get("fallback"), str):
            values["fallback"] = (values["fallback"],)
        if values.get("fallback") is not None:
            values["fallback"] = tuple(values["fallback"])
        made = cls(**values)
        if not 1 <= made.count <= 50 or made.half_life_days <= 0:
            raise ValueError("crowd: 1 <= count <= 50 and half_life_days > 0")
        if (made.template is None) == (made.template_file is None):
            raise ValueError("crowd needs exactly one of 'template' or 'template_file' (it renders `items`)")
        for item in made.catalog:
            if not isinstance(item, Mapping) or not isinstance(item.get("url"), str) \
                    or not isinstance(item.get("title"), str):
                raise ValueError("each catalog entry needs 'url' and 'title'")
        if made.fallback is not None and not all(isinstance(url, str) for url in made.fallback):
            raise ValueError("crowd: 'fallback' is a list of urls")
        return made


class CrowdStrategy:
    def __init__(self, spec: SlotSpec, build: BuildContext) -> None:
        self.opts = opts = CrowdOptions.parse(spec.options)
        self.store: StateStore = shared_store(build)
        template: Template
        template, _ = build.compile_template(opts.template, opts.template_file, spec.here("crowd", "template"))
        self.template = template
        self.rule_id = f"{spec.name}.crowd"
        self.prefixes = opts.paths
        self.title_prefixes = opts.title_paths if opts.title_paths is not None else opts.paths
        # The catalog shared by the crowd slots of a config: YAML entries win over learned titles.
        catalog = build.shared.get("crowd_catalog")
        if catalog is None:
            catalog = build.shared["crowd_catalog"] = Catalog()
        self.catalog: Catalog = catalog
        for item in opts.catalog:
            catalog.add(item["url"], item["title"], list(item.get("tags") or ()), pinned=True)
        self.half_life_s = opts.half_life_days * 86400.0
        # The last resort of a cold start, ranked as the store ranks (url, score); titles from the catalog.
        fallback = opts.fallback if opts.fallback is not None else [item["url"] for item in opts.catalog]
        self.fallback = [(content_path(url), 0.0) for url in fallback]
        self.fetch = opts.count * 4 + 10  # candidates read: enough after dropping what was read

    def counted(self, path: str) -> bool:
        return path.startswith(self.prefixes)

    # ------------------------------------------------------------ request path

    def decide(self, slot: str, visitor: Profile | None, ctx: RequestContext, now: float) -> Decision | None:
        path = content_path(ctx.path)
        seen = read_paths(visitor) | {path}  # compared as rules.seen does: no query, no trailing slash
        store = self.store
        ranked = store.top(co_key(path), self.fetch)
        if ranked is None:
            return None  # the store is down: the default content
        count = self.opts.count
        items = self._pick(ranked, seen, count, [])
        if len(items) < count:  # cold start: the most viewed fill the list
            popular = store.top(VIEWS, self.fetch)
            if popular:
                items = self._pick(popular, seen, count, items)
            if len(items) < count:  # nobody else has read yet: the configured list
                items = self._pick(self.fallback, seen, count, items)
        if not items:
            return None
        return Decision(self.opts.variant, self.rule_id, self.template, None, {"items": items})

    def _pick(self, ranked: list[tuple[str, float]], seen: frozenset[str], count: int,
              items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        get = self.catalog.items.get
        for url, _ in ranked:
            if url in seen:
                continue
            item = get(url)
            if item is not None and item not in items:
                items.append(item)
                if len(items) == count:
                    break
        return items

    # ------------------------------------------------------------ every page view (Personalizer.visit)

    def observe_page(self, ctx: RequestContext, visitor: Profile | None, body: bytes | None,
                     now: float) -> None:
        if visitor is None:
            return  # only consenting visitors' reading is counted
        path = content_path(ctx.path)
        if not self.counted(path):
            return
        if (self.opts.learn_titles and body and not ctx.query_string and path.startswith(self.title_prefixes)
                and self.catalog.due(path, now)):
            self.catalog.learn(path, body, now)
        paths = visitor.paths
        earlier = [content_path(p) for p in (paths[:-1] if paths and paths[-1] == ctx.path[:200] else paths)]
        if path in earlier:
            return  # read before: a reload or a return is not a new co-reading
        weight = 2.0 ** ((now - EPOCH) / self.half_life_s)
        add = self.store.add
        add(VIEWS, path, weight)
        for other in set(earlier):
            if other != path and self.counted(other):
                add(co_key(other), path, weight)
                add(co_key(path), other, weight)


class Catalog:
    """url -> {title, url, tags}; learned entries are bounded (least recently learned go), YAML entries stay."""

    def __init__(self, max_learned: int = 50_000) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self._pinned: set[str] = set()
        self._learned: _Evicting = _Evicting(max_learned, self.items)
        self._lock = threading.Lock()

    def add(self, url: str, title: str, tags: list[str], pinned: bool = False, now: float = 0.0) -> None:
        with self._lock:
            key = content_path(url)
            if pinned:
                self._pinned.add(key)
                self._learned.pop(key, None)
            elif key in self._pinned:
                return  # a YAML entry stays as written
            else:
                self._learned[key] = now  # when it was learned: see due()
            self.items[key] = {"title": title, "url": url, "tags": tags}

    def due(self, url: str, now: float) -> bool:
        """Should the title of ``url`` be (re)learned from this view? Never a YAML entry; hourly at most."""
        if url in self._pinned:
            return False
        learned = self._learned.get(url)
        return learned is None or now - learned >= RELEARN_S

    def learn(self, url: str, body: bytes, now: float = 0.0) -> None:
        found = _TITLE.search(body, 0, _TITLE_SCAN)
        if found is None:
            return
        title = html.unescape(found.group(1).decode("utf-8", "replace")).strip()
        if title:
            self.add(url, " ".join(title.split())[:200], [], now=now)


class _Evicting(LRUCache[str, float]):
    """An LRU of learned urls that drops a url's catalog item when it drops the url."""

    def __init__(self, maxsize: int, items: dict[str, Any]) -> None:
        super().__init__(maxsize=maxsize)
        self._items = items

    def popitem(self) -> tuple[str, float]:
        url, value = super().popitem()
        self._items.pop(url, None)
        return url, value
