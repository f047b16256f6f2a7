"""Third-party strategies used by tests/test_strategies.py through python:module:Class."""

from __future__ import annotations

from typing import Any

from personalize_mw.rules.protocol import BuildContext, Decision, SlotSpec


class Weekday:
    """Shows `weekday` on a path given in its options; a plug-in only uses the public interface."""

    def __init__(self, spec: SlotSpec, build: BuildContext) -> None:
        self.path = spec.options.get("path", "/")
        self.template, self.static = build.compile_template(spec.options["template"], None,
                                                            spec.here("options", "template"))

    def decide(self, slot: str, visitor: Any, ctx: Any, now: float) -> Decision | None:
        if ctx.path != self.path:
            return None
        return Decision("weekday", f"{slot}.weekday", self.template, self.static)


class Broken:
    def __init__(self, spec: SlotSpec, build: BuildContext) -> None:
        pass

    def decide(self, slot: str, visitor: Any, ctx: Any, now: float) -> Decision | None:
        raise RuntimeError("plug-in bug")


class Watching:
    """Decides nothing; remembers every record it is shown (a learning strategy's view)."""

    seen: list[dict[str, Any]] = []

    def __init__(self, spec: SlotSpec, build: BuildContext) -> None:
        pass

    def decide(self, slot: str, visitor: Any, ctx: Any, now: float) -> Decision | None:
        return None

    def observe_records(self, records: Any, rewritten: bool) -> None:
        Watching.seen.extend(records)
