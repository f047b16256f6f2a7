"""The privacy interface a sink that holds records implements, and who a person is.

Four methods, each a complete operation on everything the sink holds:

- ``links(person)``: the (visitor, user) pairs of ``identify`` records that
  touch the person, so :mod:`.requests` can follow them;
- ``export(person)``: every record of the person;
- ``forget(person)``: delete them, return how many;
- ``prune(before)``: delete every record with ``ts`` before an RFC 3339 time.

A record belongs to a person when its ``visitor`` is one of the person's
visitor ids or its ``user`` one of their user ids (``identify`` records carry
a user, and conversions imported by ``personalize-mw import-conversions``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..touchpoints.encoding import to_json_bytes

if TYPE_CHECKING:
    from ..storage import Location

METHODS = ("links", "export", "forget", "prune")


@dataclass(frozen=True)
class Person:
    visitors: frozenset[str]
    users: frozenset[str]

    def owns(self, record: dict[str, Any]) -> bool:
        return record.get("visitor") in self.visitors or record.get("user") in self.users

    def needles(self) -> list[bytes]:
        """Every id as the sinks encode it, for a cheap substring test before parsing a line."""
        return [to_json_bytes(i) for i in self.visitors | self.users]


@runtime_checkable
class Store(Protocol):
    label: str

    def links(self, person: Person) -> set[tuple[str, str]]: ...

    def export(self, person: Person) -> Iterable[dict[str, Any]]: ...

    def forget(self, person: Person) -> int: ...

    def prune(self, before: str) -> int: ...


def python_store(location: Location) -> Store | None:
    """A ``python:`` sink that implements the four methods is its own store; None for one that does not."""
    from ..storage import open_location

    sink = open_location(location.url, "sink")
    if not all(callable(getattr(sink, name, None)) for name in METHODS):
        return None
    if not isinstance(getattr(sink, "label", None), str):
        sink.label = location.label
    return sink  # the four methods, checked above, and the label
