"""Exceptions that carry enough context to say what to fix."""

from __future__ import annotations

from collections.abc import Sequence

KeyPath = tuple[str | int, ...]  # where in the config: keys and list indexes from the top
Problem = tuple[KeyPath, str]  # (where, what is wrong)


class PersonalizeError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(PersonalizeError):
    """An invalid configuration, located by file, line and key path.

    ``problems`` holds one ``(key_path, message)`` pair per mistake so that
    ``personalize-mw check`` can list them all at once instead of one per run.
    """

    def __init__(
        self,
        problems: Sequence[Problem],
        source: str | None = None,
        lines: Sequence[int | None] | None = None,
    ) -> None:
        self.problems = list(problems)
        self.source = source
        self.lines = list(lines) if lines is not None else [None] * len(self.problems)
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = self.source or "<config>"
        out = []
        for (path, message), line in zip(self.problems, self.lines, strict=True):
            key = ".".join(str(p) for p in path) or "(top level)"
            at = f"{where}:{line}" if line else where
            out.append(f"{at}: {key}: {message}")
        return "\n".join(out)


class ConditionError(PersonalizeError):
    """A rule condition that cannot be compiled; ``path`` is relative to the condition."""

    def __init__(self, message: str, path: KeyPath = ()) -> None:
        self.path = path
        super().__init__(message)
