"""The privacy interface a sink that holds records implements, and who a person is.

Four methods, each a complete operation on everything the sink holds:

- ``links(person)``: the (visitor, user) pairs of ``identify`` records that
  touch the person, so :mod:`.requests` can follow them;
- ``export(person)``: every record of the person;
- ``forget(person)``: delete them, return how many;
- ``prune(before)``: delete every record with ``ts`` before an RFC 3339 time.

A record belongs to a person when its ``visitor`` is one of the person's
visitor ids or its ``user`` one of their user ids (only ``identify`` records
carry a user).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Person:
    visitors: frozenset[str]
    users: frozenset[str]

    def owns(self, record: dict[str, Any]) -> bool:
        return record.get("visitor") in self.visitors or record.get("user") in self.users

    def needles(self) -> list[bytes]:
        """Every id as JSON-encoded bytes, for a cheap substring test before parsing a line."""
        import json

        return [json.dumps(i, ensure_ascii=False).encode("utf-8") for i in self.visitors | self.users]


@runtime_checkable
class Store(Protocol):
    label: str

    def links(self, person: Person) -> set[tuple[str, str]]: ...

    def export(self, person: Person) -> Iterable[dict[str, Any]]: ...

    def forget(self, person: Person) -> int: ...

    def prune(self, before: str) -> int: ...
