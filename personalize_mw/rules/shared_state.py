"""The one state store of a config, shared by its crowd and bandit slots."""

from __future__ import annotations

from ..state import StateStore, open_store
from .protocol import BuildContext


def shared_store(build: BuildContext) -> StateStore:
    store = build.shared.get("state")
    if store is None:
        config = build.config
        url = getattr(config, "state", None) or "memory"
        store = build.shared["state"] = open_store(url, resolve=lambda p: config.resolve(p))
    return store
