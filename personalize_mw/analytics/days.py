"""The one bound on the analytics' windows: attribution's lookback and lift's window, in days.

Up to a year: a B2B deal can close many months after the visits that led to
it (docs/offline.md), and a longer window is more likely a typo (3650 for
365) than a sales cycle, one that would credit every old touch silently.
"""

from __future__ import annotations

import argparse
import math

MAX_DAYS = 365.0


def check_days(value: float, name: str) -> float:
    """``value`` if it is in (0, MAX_DAYS]; ValueError names ``name`` otherwise."""
    if not (math.isfinite(value) and 0 < value <= MAX_DAYS):
        raise ValueError(f"{name} must be above 0 and at most {MAX_DAYS:g} days, not {value:g}")
    return value


def days_argument(text: str) -> float:
    """An argparse ``type``: a number of days in (0, MAX_DAYS]."""
    try:
        return check_days(float(text), "the window")
    except ValueError as exc:
        message = str(exc) if "must be" in str(exc) else f"{text!r} is not a number of days"
        raise argparse.ArgumentTypeError(message) from None
