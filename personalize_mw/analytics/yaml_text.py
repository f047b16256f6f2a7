"""Editing personalize.yaml as text, line by line, so the author's comments and order stay.

The ``suggest`` commands write their changes as a unified diff of the file a
person reviews and applies (``patch -p0``); a YAML dump would drop every comment.
These helpers find a slot's block, a rule or variant in it, set its holdout, and
write the diff.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence


def plain(text: str) -> str:
    """One printable line (paths and values come from the records: a line break would end a YAML comment)."""
    return "".join(c if c.isprintable() else "?" for c in text)


def indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def block(lines: Sequence[str], start: int) -> int:
    """The end (exclusive) of the block opened by ``lines[start]``: up to the next line as little indented."""
    base = indent(lines[start])
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or indent(lines[end]) > base):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():  # trailing blank lines belong to what follows
        end -= 1
    return end


def slot_block(lines: Sequence[str], slot: str) -> tuple[int, int]:
    """(the line of ``slot:`` under ``slots:``, the end of its block)."""
    top = next((i for i, line in enumerate(lines) if re.match(r"slots:\s*(#.*)?$", line)), None)
    if top is None:
        raise ValueError("the config has no slots: block")
    end = block(lines, top)
    # the slots are the keys at the first indentation under slots:, not a nested key of the same name
    pad = key_pad(lines, top, end)
    for i in range(top + 1, end):
        if re.match(rf"{pad}{re.escape(slot)}:\s*(#.*)?$", lines[i]):
            return i, block(lines, i)
    raise ValueError(f"slot {slot!r} is not in the config")


def key_pad(lines: Sequence[str], start: int, end: int) -> str:
    """The indentation of the keys of the block ``start``..``end`` (a slot's ``rules:``, ``holdout:``)."""
    for i in range(start + 1, end):
        if lines[i].strip() and not lines[i].lstrip().startswith("#"):
            return " " * indent(lines[i])
    return " " * (indent(lines[start]) + 2)


def item(lines: Sequence[str], start: int, end: int, variant: str) -> tuple[int, int]:
    """The list item (a rule or a variant) of ``variant`` between start and end."""
    pattern = re.compile(rf"\s*(- )?variant:\s*['\"]?{re.escape(variant)}['\"]?\s*(#.*)?$")
    for i in range(start, end):
        if found := pattern.match(lines[i]):
            dash = indent(lines[i]) - (0 if found.group(1) else 2)  # the item's "- " is two left of its keys
            j = i
            while j > start and not (lines[j].lstrip().startswith("- ") and indent(lines[j]) == dash):
                j -= 1
            return j, block(lines, j)
    raise ValueError(f"no rule or variant {variant!r} in the slot")


def set_holdout(lines: list[str], slot: str, share: float, notes: Sequence[str], why: str) -> None:
    """The slot's ``holdout:`` becomes ``share`` (added first in the slot if it has none), the ``notes``
    as comment lines above it and ``why`` as its end-of-line comment."""
    start, end = slot_block(lines, slot)
    pad = key_pad(lines, start, end)
    new = [*(f"{pad}# {note}" for note in notes), f"{pad}holdout: {share:g}   # {why}"]
    for i in range(start + 1, end):
        if re.match(r"\s*holdout:", lines[i]) and indent(lines[i]) == len(pad):
            lines[i:i + 1] = new
            return
    lines[start + 1:start + 1] = new


def diff(text: str, new: str, path: str) -> str:
    """A unified diff that ``patch -p0`` or ``git apply`` applies to ``path``."""
    return "".join(difflib.unified_diff(text.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=path, tofile=path))
