"""The request's query is read by a fast parser that must agree with parse_qsl."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given, settings
from hypothesis import strategies as st

from personalize_mw.core.context import RequestContext, parse_query

_PIECES = st.sampled_from(["a", "utm_source", "=", "&", "+", "%", "%2", "%E2%9C%93", "%zz", ";", " ", "é", "x", "1"])


def reference(query_string: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in parse_qsl(query_string[:4096], keep_blank_values=True):
        found.setdefault(key, value[:1024])
    return found


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=30).map("".join) | st.text(max_size=60))
def test_parse_query_agrees_with_parse_qsl_first_value_wins(query_string: str) -> None:
    assert parse_query(query_string) == reference(query_string)


def test_the_context_reads_utm_from_the_fast_parser() -> None:
    ctx = RequestContext("GET", "http", "example.com", "/", "utm_source=news+letter&utm_source=x&utm_medium=%65mail",
                         {})
    assert ctx.utm["source"] == "news letter" and ctx.utm["medium"] == "email"
