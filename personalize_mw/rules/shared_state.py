"""The one state store of a config, shared by its crowd and bandit slots."""

from __future__ import annotations

import atexit

from ..state import StateStore, open_store
from .protocol import BuildContext


def shared_store(build: BuildContext) -> StateStore:
    store = build.shared.get("state")
    if store is None and build.check_only:
        # A check must not create the sqlite file or reach Redis: a store in memory serves.
        store = build.shared["state"] = open_store("memory")
    if store is None:
        config = build.config
        store = build.shared["state"] = open_store(config.state, resolve=lambda p: config.resolve(p))
        atexit.register(store.close)  # what is buffered (under a second of counts) is written on exit
    return store
