"""The request path's compiled pieces (``_scan.c``), where they may be used.

``scan`` is the compiled module, or None where no compiler was there at install
or ``PERSONALIZE_MW_PURE_PYTHON`` asks for the pure-Python paths (the suite runs
both). Each piece has a Python twin that it is checked against, and that serves
when it is None or declines an input.
"""

from __future__ import annotations

import os
from types import ModuleType


def _compiled() -> ModuleType | None:
    if os.environ.get("PERSONALIZE_MW_PURE_PYTHON"):
        return None
    try:
        from . import _scan
    except ImportError:  # no compiler where it was installed: the same paths, slower
        return None
    return _scan


scan = _compiled()
