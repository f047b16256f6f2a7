"""Custom events and conversions asked for by the site: what is valid, and what is pending.

The same checks serve ``track()`` in view code (a bad argument raises: it is a
bug in the view) and the client-side endpoint (a bad body is a 400).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_PROPS = 20
MAX_KEY = 64
MAX_TEXT = 256
_SCALARS = (str, int, float, bool, type(None))


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError("an event name has 1 to 64 characters of A-Z a-z 0-9 _ . : -")
    return name


def check_value(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("an event value is a finite number")
    return float(value) if isinstance(value, float) else value


def value_problem(name: str, value: float | None, goal_max: float | None, max_value: float) -> str | None:
    """Why a value from outside (the browser, an imported file) is refused, if it is.

    ``goal_max``: the goal's ``max_value`` where it lets the value through (0 to it);
    otherwise the value is bounded by ``events.max_value`` either way.
    """
    if value is None:
        return None
    if goal_max is not None:
        if not 0 <= value <= goal_max:
            return f"the value of {name!r} is between 0 and {goal_max:g}"
    elif abs(value) > max_value:
        return f"a value is at most {max_value:g} either way (events.max_value)"
    return None


def _encodable(text: str) -> bool:
    """No lone surrogates (JSON lets "\\udcff" through): the sinks must be able to write UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(text: object, limit: int) -> str:
    if not isinstance(text, str) or not 0 < len(text) <= limit or not _encodable(text):
        raise ValueError(f"a string of 1 to {limit} characters of valid Unicode")
    return text


def check_props(props: object) -> dict[str, Any] | None:
    """Small and flat: at most 20 string keys with scalar values, strings up to 256 characters."""
    if props is None:
        return None
    if not isinstance(props, dict) or len(props) > MAX_PROPS:
        raise ValueError(f"props is a mapping of at most {MAX_PROPS} entries")
    for key, value in props.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY or not _encodable(key):
            raise ValueError(f"a props key is a string of 1 to {MAX_KEY} characters")
        if not isinstance(value, _SCALARS) or (isinstance(value, str) and (len(value) > MAX_TEXT
                                                                           or not _encodable(value))):
            raise ValueError(f"a props value is a string (up to {MAX_TEXT} characters), number, boolean or null")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("a props number is finite")
    return dict(props) or None


@dataclass(frozen=True, slots=True)
class Requested:
    """One identify() or track() call, waiting for the visit that gives it visitor, session and path."""

    kind: str  # "identify" or "track"
    t: float
    user: str | None = None  # identify: the user id as it will be stored
    name: str | None = None  # track: the event or goal name
    value: float | None = None
    props: dict[str, Any] | None = None
    client: bool = False  # from the event endpoint: the browser's word (see Goal.client)
