"""Privacy requests on the stored touchpoints: forget (erasure), export (access), prune (retention).

A sink that holds records gets a :class:`~.store.Store` here (jsonl, sqlite,
postgresql; a ``python:`` sink may implement the same methods itself); the
others (http, redis, python) are sent a ``suppress`` record instead, for the
system downstream to act on. See :mod:`.requests` for the operations.
"""

from .requests import export_person, forget_person, prune_records
from .store import Person, Store

__all__ = ["Person", "Store", "export_person", "forget_person", "prune_records"]
