"""What a visitor already has: read pages and completed goals, from the profile cookie.

Shared by the journey (no call to action for a completed goal, no link to a
page already read) and by the crowd strategy (no recommendation of a page
already read). The profile keeps the last ``cookie.max_paths`` page views.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ..core.visitor import Profile

T = TypeVar("T")


def content_path(link: str) -> str:
    """The comparable path of a link or path: no scheme/host, query, fragment or trailing slash."""
    if "?" not in link and "#" not in link and "//" not in link:  # the common case: a plain path
        return link.rstrip("/") or "/" if link.endswith("/") else link
    if "://" in link or link.startswith("//"):
        link = urlsplit(link).path or "/"
    else:
        link = link.split("#", 1)[0].split("?", 1)[0]
    return link.rstrip("/") or "/"


def read_paths(visitor: Profile | None) -> frozenset[str]:
    """The pages this visitor has viewed, as :func:`content_path` values (empty without a profile)."""
    if visitor is None or not visitor.paths:
        return frozenset()
    return frozenset(content_path(p) for p in visitor.paths)


def has_read(visitor: Profile | None, link: str) -> bool:
    return visitor is not None and content_path(link) in read_paths(visitor)


def has_completed(visitor: Profile | None, goal: str) -> bool:
    return visitor is not None and goal in visitor.goals


def unread(visitor: Profile | None, items: Iterable[T], link: Callable[[T], str]) -> list[T]:
    """``items`` in order, without those whose ``link(item)`` the visitor has read."""
    seen = read_paths(visitor)
    if not seen:
        return list(items)
    return [item for item in items if content_path(link(item)) not in seen]
