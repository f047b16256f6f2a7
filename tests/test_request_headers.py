"""The ASGI scope's headers as the request context reads them: the compiled path
(``_scan.request_headers``) against the Python one, on whatever hypothesis draws."""

from __future__ import annotations

import os

import pytest
from conftest import pure_python_stdout
from hypothesis import given
from hypothesis import strategies as st

from personalize_mw import asgi
from personalize_mw.core import markers

NAMES = st.sampled_from([b"host", b"Host", b"COOKIE", b"cookie", b"Cookie", b"user-agent", b"X-\xc0", b""])
HEADERS = st.lists(st.tuples(st.one_of(NAMES, st.binary(max_size=12)), st.binary(max_size=20)), max_size=12)


def test_the_compiled_path_is_the_one_in_use() -> None:
    if os.environ.get("PERSONALIZE_MW_PURE_PYTHON") or not markers.COMPILED:
        assert asgi.request_headers is asgi._request_headers_py
    else:
        assert asgi.request_headers is asgi._request_headers_compiled


@given(HEADERS)
def test_compiled_and_python_paths_agree(raw: list[tuple[bytes, bytes]]) -> None:
    expected = asgi._request_headers_py(raw)
    assert asgi._request_headers_compiled(raw) == expected
    assert asgi._request_headers_compiled(tuple(list(pair) for pair in raw)) == expected  # [name, value] lists


def test_first_value_wins_and_cookies_are_joined() -> None:
    raw = [(b"Host", b"a.example"), (b"cookie", b"a=1"), (b"host", b"b.example"), (b"COOKIE", b"b=\xe9")]
    for read in (asgi._request_headers_py, asgi._request_headers_compiled):
        assert read(raw) == {"host": "a.example", "cookie": "a=1; b=\u00e9"}


@pytest.mark.skipif(not markers.COMPILED, reason="the compiled scan is not built (pure Python run)")
def test_the_compiled_call_declines_what_only_python_defines() -> None:
    from personalize_mw.core._scan import request_headers
    assert request_headers([(b"X-\xc0", b"")]) is None  # str.lower() lowers latin-1 letters too
    assert request_headers([(bytearray(b"host"), b"x")]) is None
    assert request_headers([(b"host",)]) is None
    assert request_headers(iter([(b"host", b"x")])) is None
    # ... and the adapter's path still reads them all.
    assert asgi.request_headers(iter([(b"X-\xc0", b"1")])) == {"x-\xe0": "1"}


def test_without_the_compiled_module_the_python_path_serves() -> None:
    code = ("from personalize_mw import asgi; "
            "print(asgi.request_headers is asgi._request_headers_py, asgi.request_headers([(b'A', b'1')]))")
    assert pure_python_stdout(code).split(None, 1) == ["True", "{'a': '1'}\n"]
