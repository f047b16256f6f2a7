"""Markers are found on bytes: wire format, names, malformed pages, byte-exact replacement."""

from __future__ import annotations

import pytest

from personalize_mw.core.markers import Block, MarkerError, find_blocks, has_markers, replace_blocks


def names(body: bytes) -> list[str]:
    return [block.name for block in find_blocks(body)]


def content(body: bytes, block: Block) -> bytes:
    return body[block.content_start:block.content_end]


@pytest.mark.parametrize(
    "body",
    [
        b"<!-- personalize:hero -->Hi<!-- /personalize:hero -->",
        b"<!--personalize:hero-->Hi<!--/personalize:hero-->",
        b"<!--   personalize:hero\t-->Hi<!--\n/personalize:hero   -->",
        b"<!-- personalize:hero-->Hi<!--/personalize:hero -->",
    ],
)
def test_wire_format_with_and_without_spaces(body: bytes) -> None:
    [block] = find_blocks(body)
    assert block.name == "hero"
    assert content(body, block) == b"Hi"


@pytest.mark.parametrize("name", ["hero", "a", "cta-2", "top_banner", "x9", "0", "a-b_c-1"])
def test_valid_names(name: str) -> None:
    body = f"<!-- personalize:{name} -->d<!-- /personalize:{name} -->".encode()
    assert names(body) == [name]


@pytest.mark.parametrize("name", ["Hero", "hé", "a.b", "a b", "a$"])
def test_names_outside_the_alphabet_are_not_markers(name: str) -> None:
    body = f"<!-- personalize:{name} -->d<!-- /personalize:{name} -->".encode()
    assert find_blocks(body) == []


def test_empty_name_is_not_a_marker() -> None:
    assert find_blocks(b"<!-- personalize: -->d<!-- /personalize: -->") == []


def test_several_blocks_in_page_order_with_exact_offsets() -> None:
    body = (b"<html><body><!-- personalize:hero -->H<!-- /personalize:hero -->"
            b"<p>mid</p><!-- personalize:cta -->C1<!-- /personalize:cta -->"
            b"<!-- personalize:hero -->H2<!-- /personalize:hero --></body></html>")
    blocks = find_blocks(body)
    assert [b.name for b in blocks] == ["hero", "cta", "hero"]
    assert [content(body, b) for b in blocks] == [b"H", b"C1", b"H2"]


def test_empty_default_content() -> None:
    body = b"<!-- personalize:hero --><!-- /personalize:hero -->"
    [block] = find_blocks(body)
    assert block.content_start == block.content_end


def test_multibyte_utf8_default_content_is_kept_as_bytes() -> None:
    default = "Grüße — 日本".encode()
    body = b"<!-- personalize:hero -->" + default + b"<!-- /personalize:hero -->"
    [block] = find_blocks(body)
    assert content(body, block) == default


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"<!-- personalize:hero -->never closed", "never closed"),
        (b"<!-- personalize:hero -->x<!-- /personalize:cta -->", "closed by"),
        (b"x<!-- /personalize:hero -->", "without being opened"),
        (b"<!-- personalize:a --><!-- personalize:b -->x<!-- /personalize:b --><!-- /personalize:a -->",
         "nesting"),
        (b"<!-- personalize:a -->x<!-- personalize:a -->y<!-- /personalize:a -->", "nesting"),
        (b"<!-- personalize:a -->x<!-- /personalize:a --><!-- personalize:b -->", "never closed"),
    ],
)
def test_malformed_markers_raise(body: bytes, fragment: str) -> None:
    with pytest.raises(MarkerError, match=fragment):
        find_blocks(body)


@pytest.mark.parametrize(
    "body",
    [
        b"<p>Type personalize:hero in the box</p>",
        b"<!-- see personalize:hero for details -->",
        b"<!-- TODO personalize:hero -->",
        b"<script>var s = 'personalize:hero -->';</script>",
        b"<!-- personalize:hero trailing -->",
        b"personalize:hero-->",
        b"<!- personalize:hero -->",
        b"<!-- /personalize:hero extra -->",
    ],
)
def test_token_in_text_or_other_comments_is_ignored(body: bytes) -> None:
    assert find_blocks(body) == []


@pytest.mark.parametrize("bangs", [0, 5, 23, 24, 25, 200])
def test_markers_found_however_many_exclamation_marks_come_first(bangs: int) -> None:
    # Past a number of false '!' hits the scanner falls back to a plain token search.
    noise = b"<p>Wow!</p><!doctype html>" * bangs
    body = noise + b"<!--personalize:hero-->x<!-- /personalize:hero -->!" + noise
    assert has_markers(body)
    [block] = find_blocks(body)
    assert block.name == "hero" and body[block.content_start:block.content_end] == b"x"


def test_ignored_token_between_real_markers() -> None:
    body = (b"<!-- personalize:hero -->see personalize:cta and <!-- note personalize:x -->"
            b"<!-- /personalize:hero -->")
    [block] = find_blocks(body)
    assert content(body, block) == b"see personalize:cta and <!-- note personalize:x -->"


def test_marker_at_end_of_body_without_close_of_comment() -> None:
    # The token right at the end, no "-->": not a marker, no IndexError.
    assert find_blocks(b"<!-- personalize:hero") == []
    assert find_blocks(b"<!-- personalize:") == []
    assert find_blocks(b"personalize:") == []


def test_has_markers() -> None:
    assert not has_markers(b"<html>nothing here</html>")
    assert has_markers(b"<!-- personalize:hero -->")


def test_replace_keeps_markers_and_bytes_outside() -> None:
    body = (b"\xef\xbb\xbfbefore <!-- personalize:hero -->old<!-- /personalize:hero --> middle\r\n"
            b"<!--personalize:cta-->keep<!--/personalize:cta--> after\xff")
    blocks = find_blocks(body)
    out = replace_blocks(body, {0: "nëw".encode()}, blocks)
    assert out == (b"\xef\xbb\xbfbefore <!-- personalize:hero -->n\xc3\xabw<!-- /personalize:hero --> middle\r\n"
                   b"<!--personalize:cta-->keep<!--/personalize:cta--> after\xff")


def test_replace_several_blocks() -> None:
    body = b"A<!-- personalize:a -->1<!-- /personalize:a -->B<!-- personalize:b -->2<!-- /personalize:b -->C"
    blocks = find_blocks(body)
    out = replace_blocks(body, {0: b"one", 1: b""}, blocks)
    assert out == b"A<!-- personalize:a -->one<!-- /personalize:a -->B<!-- personalize:b --><!-- /personalize:b -->C"
    # The markers survive, so the output can be parsed again with the same blocks.
    assert [content(out, b) for b in find_blocks(out)] == [b"one", b""]


def test_replace_with_nothing_is_identity() -> None:
    body = b"x<!-- personalize:a -->1<!-- /personalize:a -->y"
    assert replace_blocks(body, {}, find_blocks(body)) == body
