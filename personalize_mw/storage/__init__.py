"""Where records and counters are stored: the scheme registry and the SQLite helper.

See :mod:`.schemes` for what each URL scheme means and which module serves it.
"""

from .schemes import (
    REGISTRY,
    ROLES,
    Location,
    Role,
    Scheme,
    check,
    handler,
    key,
    label,
    locate,
    names,
    open_location,
    parse_size,
    scheme_of,
    table_names,
)

__all__ = ["REGISTRY", "ROLES", "Location", "Role", "Scheme", "check", "handler", "key", "label", "locate",
           "names", "open_location", "parse_size", "scheme_of", "table_names"]
