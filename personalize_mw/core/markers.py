"""Finding ``<!-- personalize:NAME -->default<!-- /personalize:NAME -->`` in bytes.

We never decode or parse the page, but we tokenize it as far as markers need:
a marker inside an ordinary comment or inside ``<script>``, ``<style>`` and the
other raw-text elements is not one (a script's string may hold visitor input).
The scan is compiled (``_scan.c``, hopping from ``<`` to ``<`` with memchr: a
few µs for 50 KB); where no compiler was available at install it is the same
loop in Python (``_scan_py``, a regex pass: some 40 µs more). Anything malformed
(unterminated, mismatched, nested) raises :class:`MarkerError` and the caller
leaves the page as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from ..errors import PersonalizeError
from . import compiled

TOKEN = b"personalize:"


SLOT_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")


def wrap_block(name: str, content: str) -> str:
    """The wire format around ``content``, for template tags of any engine."""
    if not SLOT_NAME.match(name):
        raise ValueError(f"slot name {name!r} must match [a-z0-9_-]+")
    return f"<!-- personalize:{name} -->{content}<!-- /personalize:{name} -->"


class MarkerError(PersonalizeError, ValueError):
    """The page's markers are malformed; the message says how."""


class Block(NamedTuple):
    name: str
    content_start: int  # first byte after the opening comment
    content_end: int  # first byte of the closing comment


# A whole marker comment: '<!--', spaces, optional '/', the token, the name,
# spaces, '-->'. '-' is a name byte, so the name stops before a '-->' that
# follows it without a space.
_MARKER = re.compile(
    rb"<!--[ \t\r\n]*(/?)personalize:((?:(?!-->)[a-z0-9_-]){1,64})[ \t\r\n]*-->"
)

# Elements whose content the HTML tokenizer reads as text (raw text and escapable
# raw text, and noscript as a browser with scripting reads it): a marker in there
# is a script's string or a title's words, not a marker.
RAW_TEXT = ("script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "noscript",
            "plaintext")
_NEXT = re.compile(rb"<(?:!--|(?i:(" + "|".join(RAW_TEXT).encode() + rb"))[\t\n\f\r />])")
_REST_OF_TAG = re.compile(rb"""(?:[^>"']|"[^"]*"|'[^']*')*>""")
_END_TAG = {name: re.compile(rb"</" + name.encode() + rb"[\t\n\f\r />]", re.IGNORECASE) for name in RAW_TEXT}

Marker = tuple[bool, str, int, int]  # closing?, name, start, end

_MAX_MISSES = 24


def _any_marker_comment(body: bytes) -> bool:
    """Whether the page holds a marker comment anywhere, raw text or not: the cheap first test.

    Most pages have none. Hops between '!' bytes (memchr: under 1 µs for 50 KB,
    where a multi-byte ``find`` takes 20) and tries the pattern right there;
    after ``_MAX_MISSES`` '!' that start no marker, searches with the pattern.
    """
    find, match, misses, pos = body.find, _MARKER.match, 0, 0
    while misses < _MAX_MISSES:
        bang = find(b"!", pos)
        if bang == -1:
            return False
        if bang and match(body, bang - 1) is not None:
            return True
        misses, pos = misses + 1, bang + 1
    return _MARKER.search(body, pos) is not None


def _scan_py(body: bytes) -> list[Marker]:
    """Every marker comment an HTML tokenizer would see as a comment, in page order.

    Skips ordinary comments and the content of raw-text elements, ending it at
    the first ``</name`` (the spec's escaped script states are not followed: a
    host that escapes ``</`` in a script's strings never lets one through).
    ``_scan.c`` is the same loop compiled; the suite checks one against the other.
    """
    found: list[Marker] = []
    search, pos = _NEXT.search, 0
    while (hit := search(body, pos)) is not None:
        start = hit.start()
        element = hit.group(1)
        if element is None:  # '<!--'
            marker = _MARKER.match(body, start)
            if marker is not None:
                closing, name = marker.groups()
                found.append((closing == b"/", name.decode("ascii"), start, marker.end()))
                pos = marker.end()
                continue
            end = body.find(b"-->", start + 4)
            if end == -1:
                break
            pos = end + 3
            continue
        name = element.decode("ascii").lower()
        tag = _REST_OF_TAG.match(body, hit.end() - 1)
        if tag is None or name == "plaintext":
            break  # the rest of the page is inside a tag, or text
        end_tag = _END_TAG[name].search(body, tag.end())
        if end_tag is None:
            break
        pos = end_tag.start() + 2 + len(name)
    return found


_Blocks = Callable[[bytes, type[Block], type[MarkerError]], list[Block]]
_blocks: _Blocks | None  # the scan and the pairing of find_blocks in one compiled call
COMPILED = compiled.scan is not None
if compiled.scan is not None:
    _scan, _blocks = compiled.scan.scan, compiled.scan.blocks
else:  # the same scan, slower
    _scan, _blocks = _scan_py, None


def has_markers(body: bytes) -> bool:
    """Whether the page may have blocks: False means none for sure (the cheap test, no scan).

    True for a marker comment anywhere, even in a script: the caller then looks
    with :func:`find_blocks`, which knows raw text, and finds nothing there.
    """
    return _any_marker_comment(body)


def find_blocks(body: bytes) -> list[Block]:
    """Every marked block, in page order; [] for a page without markers."""
    if not _any_marker_comment(body):
        return []
    return blocks_of(body)


def blocks_of(body: bytes) -> list[Block]:
    """:func:`find_blocks` for a body :func:`has_markers` said True of: the scan, without the quick test again."""
    if _blocks is not None:
        return _blocks(body, Block, MarkerError)
    return _pair(_scan(body))


def _pair(markers: list[Marker]) -> list[Block]:
    """Open and close markers paired into blocks; ``_scan.c``'s blocks() pairs alike, with the same messages."""
    blocks: list[Block] = []
    open_name: str | None = None
    open_end = 0
    for closing, name, start, end in markers:
        if not closing:
            if open_name is not None:
                raise MarkerError(f"block {name!r} opens inside block {open_name!r} (nesting is not allowed)")
            open_name, open_end = name, end
        else:
            if open_name is None:
                raise MarkerError(f"block {name!r} closes without being opened")
            if name != open_name:
                raise MarkerError(f"block {open_name!r} is closed by {name!r}")
            blocks.append(Block(name, open_end, start))
            open_name = None
    if open_name is not None:
        raise MarkerError(f"block {open_name!r} is never closed")
    return blocks


def replace_blocks(body: bytes, replacements: dict[int, bytes], blocks: list[Block]) -> bytes:
    """The body with block ``i``'s content replaced by ``replacements[i]``; markers stay."""
    view = memoryview(body)  # slices of a view are not copies: the page is copied once, by join
    parts: list[bytes | memoryview] = []
    last = 0
    for index, block in enumerate(blocks):
        new = replacements.get(index)
        if new is None:
            continue
        parts.append(view[last:block.content_start])
        parts.append(new)
        last = block.content_end
    parts.append(view[last:])
    return b"".join(parts)
