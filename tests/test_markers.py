"""Markers are found on bytes: wire format, names, malformed pages, raw text, byte-exact replacement.

Every test runs against both scans: the compiled one (``_scan.c``) and the
pure-Python fallback a machine without a compiler gets.
"""

from __future__ import annotations

import os

import pytest
from conftest import pure_python_stdout
from hypothesis import given, settings
from hypothesis import strategies as st

from personalize_mw.core import markers
from personalize_mw.core.markers import Block, MarkerError, find_blocks, has_markers, replace_blocks

SCANS = {"python": markers._scan_py}
PAIRINGS = {"python": None}  # None: find_blocks pairs the scan's markers in Python
if markers.COMPILED:
    from personalize_mw.core._scan import blocks as compiled_blocks
    from personalize_mw.core._scan import scan as compiled_scan

    SCANS["compiled"] = compiled_scan
    PAIRINGS["compiled"] = compiled_blocks


def test_the_compiled_scan_was_built() -> None:
    # make test installs with a C compiler; a silent fallback would hide a broken build.
    assert markers.COMPILED or os.environ.get("PERSONALIZE_MW_PURE_PYTHON")


def test_without_the_compiled_scan_the_python_one_serves() -> None:
    code = ("from personalize_mw.core import markers as m; "
            "print(m.COMPILED, [b.name for b in m.find_blocks(b'<script><!-- personalize:a --></script>"
            "<!-- personalize:b -->x<!-- /personalize:b -->')])")
    assert pure_python_stdout(code).split() == ["False", "['b']"]


@pytest.fixture(autouse=True, params=sorted(SCANS))
def scan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(markers, "_scan", SCANS[request.param])
    monkeypatch.setattr(markers, "_blocks", PAIRINGS[request.param])
    return str(request.param)


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


# ---------------------------------------------------------------- raw text (issue 9 item 12)

HERO = b"<!-- personalize:hero -->Hi<!-- /personalize:hero -->"


@pytest.mark.parametrize("element", ["script", "style", "textarea", "title", "xmp", "iframe", "noembed",
                                     "noframes", "noscript", "SCRIPT", "Style", "TextArea"])
def test_markers_inside_raw_text_elements_are_text(element: str) -> None:
    inside = f"<{element}>var s = '<!-- personalize:cta -->x<!-- /personalize:cta -->';</{element}>".encode()
    assert names(HERO + inside + HERO.replace(b"hero", b"footer")) == ["hero", "footer"]


def test_a_stray_closer_in_a_script_string_does_not_switch_the_page_off() -> None:
    # A host that escapes only "</" in a JS string lets "<!-- /personalize:hero -->" through.
    attacker = b"<script>var q = \"<!-- /personalize:hero -->\";</script>"
    body = b"<!-- personalize:hero -->Hi" + attacker + b"<!-- /personalize:hero -->"
    [block] = find_blocks(body)
    assert content(body, block) == b"Hi" + attacker


def test_a_marker_pair_in_a_script_is_not_filled() -> None:
    body = b"<script type='text/template'><!-- personalize:hero -->x<!-- /personalize:hero --></script>"
    assert find_blocks(body) == []


@pytest.mark.parametrize("tag", [
    b"<script>", b"<script type=\"module\">", b"<script data-x='a>b'>", b"<script\nsrc=x>",
    b"<script/>", b"<style media=\"(min-width: 1px)\">",
])
def test_start_tags_with_attributes(tag: bytes) -> None:
    name = tag[1:].split(b">")[0].split()[0].strip(b"/").split(b"/")[0]
    body = tag + b"<!-- personalize:cta -->x<!-- /personalize:cta --></" + name + b">" + HERO
    assert names(body) == ["hero"]


@pytest.mark.parametrize("end_tag", [b"</script>", b"</SCRIPT>", b"</script >", b"</script\n>", b"</script/>"])
def test_raw_text_ends_at_its_end_tag(end_tag: bytes) -> None:
    assert names(b"<script>1<2" + end_tag + HERO) == ["hero"]


@pytest.mark.parametrize("not_an_end", [b"</scripts>", b"</scrip>", b"</ script>", b"<\\/script>"])
def test_what_does_not_end_raw_text(not_an_end: bytes) -> None:
    assert names(b"<script>x" + not_an_end + HERO + b"</script>") == []


@pytest.mark.parametrize("not_raw", [b"<scripts>", b"<scriptx>", b"<titles>", b"<stylesheet>", b"<s>", b"<em>"])
def test_elements_that_merely_start_like_raw_text(not_raw: bytes) -> None:
    assert names(not_raw + HERO) == ["hero"]


@pytest.mark.parametrize("unterminated", [b"<script>", b"<script src='x>", b"<plaintext>", b"<title>"])
def test_raw_text_to_the_end_of_the_page_hides_what_follows(unterminated: bytes) -> None:
    assert names(HERO + unterminated + HERO.replace(b"hero", b"cta")) == ["hero"]


def test_markers_inside_an_ordinary_comment_are_not_markers() -> None:
    # A comment ends at its first "-->": here the cta markers' own, so neither is a marker.
    body = b"<!-- old: <!-- personalize:cta -->x" + HERO + b"<!-- was <!-- /personalize:cta --> -->"
    assert names(body) == ["hero"]


def test_a_script_inside_a_comment_is_not_a_script() -> None:
    assert names(b"<!-- <script> -->" + HERO) == ["hero"]


def test_a_block_may_hold_a_script() -> None:
    body = b"<!-- personalize:hero --><script>var a = 1 < 2;</script><!-- /personalize:hero -->"
    [block] = find_blocks(body)
    assert content(body, block) == b"<script>var a = 1 < 2;</script>"


_FRAGMENTS = st.sampled_from([
    b"<!-- personalize:hero -->", b"<!--/personalize:hero-->", b"<!-- personalize:cta -->",
    b"<!-- /personalize:cta -->", b"<!--", b"-->", b"--->", b"<!-->", b"<script>", b"</script>", b"<SCRIPT ",
    b"</Script\t", b"<style>", b"</style>", b"<title>", b"</title>", b"<plaintext>", b"<textarea>",
    b"</textarea>", b"'", b'"', b">", b"<", b"/", b"-", b"personalize:", b"x", b" ", b"\n", b"\xc3\xa9",
    b"<p>", b"</p>", b"<scripts>", b"<!doctype html>", b"=",
])


@pytest.mark.skipif("compiled" not in SCANS, reason="the compiled scan is not built on this machine")
@settings(max_examples=3000, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=40))
def test_the_compiled_scan_agrees_with_the_python_one(parts: list[bytes]) -> None:
    body = b"".join(parts)
    assert SCANS["compiled"](body) == markers._scan_py(body)


@pytest.mark.skipif("compiled" not in SCANS, reason="the compiled scan is not built on this machine")
@settings(max_examples=3000, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=40))
def test_the_compiled_pairing_agrees_with_the_python_one(parts: list[bytes]) -> None:
    body = b"".join(parts)

    def found(pair: object) -> object:
        try:
            return pair()  # type: ignore[operator]
        except MarkerError as exc:
            return ("error", str(exc))

    compiled = found(lambda: compiled_blocks(body, Block, MarkerError))
    assert compiled == found(lambda: markers._pair(markers._scan_py(body)))
    assert all(type(block) is Block for block in compiled) if isinstance(compiled, list) else True


def test_the_compiled_pairing_makes_blocks_and_refuses_what_is_not_a_tuple_type() -> None:
    if "compiled" not in SCANS:
        pytest.skip("the compiled scan is not built on this machine")
    [block] = compiled_blocks(HERO, Block, MarkerError)
    assert type(block) is Block and block == Block("hero", 25, 27) and block.name == "hero"
    with pytest.raises(TypeError):
        compiled_blocks(HERO, dict, MarkerError)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        compiled_blocks("text", Block, MarkerError)  # type: ignore[arg-type]
