"""Where strategy names come from: built-ins, entry points, ``python:module:Class``.

Built-ins are listed as ``module:attribute`` strings and imported on first
use, exactly as a plug-in is: nothing private, and a site that never names
``crowd`` never imports it. ``register()`` lets code (tests, an app) add a
name at run time; entry points in the group ``personalize_mw.rulesets``
are read once, lazily (:class:`personalize_mw.plugins.PluginRegistry`).
"""

from __future__ import annotations

from ..plugins import PluginRegistry, UnknownPlugin
from .protocol import RuleSetFactory

ENTRY_POINT_GROUP = "personalize_mw.rulesets"

BUILTINS: dict[str, str] = {
    "rules": "personalize_mw.rules.engine:RulesStrategy",
    "journey": "personalize_mw.rules.journey:JourneyStrategy",
    "split": "personalize_mw.rules.experiment:SplitStrategy",
    "crowd": "personalize_mw.rules.crowd:CrowdStrategy",
    "bandit": "personalize_mw.rules.bandit:BanditStrategy",
}


class UnknownStrategy(UnknownPlugin):
    """A strategy name that no built-in, registration, entry point or import provides."""


STRATEGIES: PluginRegistry[RuleSetFactory] = PluginRegistry("strategy", ENTRY_POINT_GROUP, BUILTINS,
                                                            UnknownStrategy)
_registered = STRATEGIES.registered  # the same dict: register() and tests see one table
register = STRATEGIES.register
resolve = STRATEGIES.resolve
