"""The Cookie header as a request is read for it: the compiled split (``_scan.cookie_pairs``)
against the Python one, on whatever hypothesis draws, and both against the rules they share."""

from __future__ import annotations

import os

import pytest
from conftest import pure_python_stdout
from hypothesis import given
from hypothesis import strategies as st

from personalize_mw.core import cookies, markers
from personalize_mw.core.cookies import Cookies, parse_cookie_header

PIECES = st.sampled_from(["pmw_id", "__Host-pmw_id", "a", "=", "==", ";", "; ", " ", "\t", '"', "\u00e9", "\u20ac",
                          "v1", "a=b", "\r", ""])
HEADERS = st.one_of(st.lists(PIECES, max_size=16).map("".join), st.text(max_size=40))
COMPILED = cookies.cookie_pairs is cookies._cookie_pairs_compiled
needs_compiled = pytest.mark.skipif(not COMPILED, reason="the compiled scan is not in use (pure Python run)")
SPLITS = [cookies._cookie_pairs_py, pytest.param(cookies._cookie_pairs_compiled, marks=needs_compiled)]


def test_the_compiled_path_is_the_one_in_use() -> None:
    if os.environ.get("PERSONALIZE_MW_PURE_PYTHON") or not markers.COMPILED:
        assert cookies.cookie_pairs is cookies._cookie_pairs_py
    else:
        assert cookies.cookie_pairs is cookies._cookie_pairs_compiled


@needs_compiled
@given(HEADERS)
def test_compiled_and_python_paths_agree(header: str) -> None:
    by_python: dict[str, str] = {}
    repeats = cookies._cookie_pairs_py(by_python, header)
    compiled: dict[str, str] = {}
    assert cookies._cookie_pairs_compiled(compiled, header) == repeats
    assert list(compiled.items()) == list(by_python.items())  # the header's order too


@pytest.mark.parametrize("split", SPLITS, ids=["python", "compiled"])
def test_the_rules_of_the_split(split: object) -> None:
    found: dict[str, str] = {}
    header = ' a = 1 ;\tb="two words"; novalue; =orphan; c=x=y; a=again; "q"=""; d=; e="; a=\t3\t'
    assert split(found, header) == [("a", "again"), ("a", "3")]  # type: ignore[operator]
    assert found == {"a": "1", "b": "two words", "c": "x=y", '"q"': "", "d": "", "e": '"'}


def test_every_copy_of_a_name_stays_at_hand() -> None:
    found = parse_cookie_header("pmw_consent=deny; x=1; pmw_consent=grant; pmw_consent=again")
    assert isinstance(found, Cookies) and found["pmw_consent"] == "deny"
    assert found.every("pmw_consent") == ("deny", "grant", "again") and found.every("x") == ("1",)
    assert parse_cookie_header("x=1").repeats is None


@needs_compiled
def test_the_compiled_call_declines_what_only_python_defines() -> None:
    from personalize_mw.core._scan import cookie_pairs
    found: dict[str, str] = {}
    assert cookie_pairs(found, "a=1; b=\u20ac") is None and found == {}  # not latin-1: nothing added
    with pytest.raises(TypeError):
        cookie_pairs(found, b"a=1")  # type: ignore[arg-type]
    # ... and the header is still read.
    assert parse_cookie_header("a=1; b=\u20ac") == {"a": "1", "b": "\u20ac"}


def test_without_the_compiled_module_the_python_path_serves() -> None:
    code = ("from personalize_mw.core import cookies as c; "
            "print(c.cookie_pairs is c._cookie_pairs_py, dict(c.parse_cookie_header('a=1; b=2')))")
    assert pure_python_stdout(code).split(None, 1) == ["True", "{'a': '1', 'b': '2'}\n"]
