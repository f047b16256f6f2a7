"""``record:`` of an enricher: which of its fields a page's pageview carries, and their values.

Recording is the site owner's choice, for fields about a company or a place (what
suggest segments can cluster by). A person's data must not reach records that way:
names that look like it are refused, and a personal enricher's ``name`` too.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..errors import Problem
    from .protocol import EnricherSpec

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,30}$")  # NAME.field stays within a props key's 64 characters
# Fields about a person, by what their names usually say (the list is a guard, not a guarantee).
_PERSONAL = re.compile(r"e_?mail|phone|mobile|first_?name|last_?name|full_?name|surname|given_?name|birth"
                       r"|street|address|postcode|postal|zip|passport|ssn", re.IGNORECASE)
MAX_TEXT = 256  # as a merge field's


def check_recorded(names: list[str]) -> list[str]:
    """The ``record:`` list, validated: field names, none that looks like a person's data; in order, once."""
    for name in names:
        if not _FIELD.match(name):
            raise ValueError(f"{name!r} is not a field name (letters, digits, _; up to 31)")
        if _PERSONAL.search(name):
            raise ValueError(f"{name!r} looks like a person's data, which records must not carry; "
                             "record fields about a company or a place only")
    return list(dict.fromkeys(names))


def personal_name(names: list[str]) -> str | None:
    """For an enricher about a person: a recorded ``name`` is theirs, refused too."""
    return next((n for n in names if n.lower() in ("name", "display_name", "username", "user")), None)


def unknown_fields(spec: EnricherSpec, names: list[str], known: Collection[str] | None) -> list[Problem]:
    """A recorded name the enricher cannot answer (a typo would record nothing, silently), at its line."""
    if known is None:
        return []
    problems: list[Problem] = []
    for index, name in enumerate(names):
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f": did you mean {close[0]!r}?" if close else f" (one of: {', '.join(sorted(known))})"
            problems.append((spec.here("record", index), f"{spec.name} has no field {name!r}{hint}"))
    return problems


def recordable(value: Any) -> Any:
    """A value props may carry (text cut to 256 characters, a finite number, a boolean); else None."""
    if isinstance(value, str):
        return value[:MAX_TEXT] or None
    if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(value)):
        return value
    return None


def recorded_props(recorded: tuple[tuple[str, str, str], ...], answers: Mapping[str, Any]) -> dict[str, Any]:
    """``{NAME.field: value}`` of the answers given so far (enricher -> its fields, or None)."""
    out: dict[str, Any] = {}
    for name, field, key in recorded:
        found = answers.get(name)
        if found:
            value = recordable(found.get(field))
            if value is not None:
                out[key] = value
    return out
