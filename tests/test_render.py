"""Variant rendering: autoescape, sandbox escapes, size and time bounds, URL schemes, errors."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest
from markupsafe import Markup

from personalize_mw.config import load_config
from personalize_mw.core.context import RequestContext
from personalize_mw.core.personalizer import Personalizer
from personalize_mw.render import RenderError, VariantRenderer

SCHEMES = ["http", "https", "mailto", "tel"]


def renderer(max_output_bytes: int = 64 * 1024, timeout_ms: float = 50.0,
             schemes: list[str] | None = None) -> VariantRenderer:
    return VariantRenderer(max_output_bytes, timeout_ms, SCHEMES if schemes is None else schemes)


def render(source: str, variables: dict[str, Any] | None = None, **options: Any) -> str:
    r = renderer(**options)
    return r.render(r.compile(source), variables or {}).decode("utf-8")


# ---------------------------------------------------------------- escaping


def test_autoescape_is_on() -> None:
    hostile = "<script>alert(1)</script>\"'&"
    out = render("<p>{{ request.query.q }}</p>", {"request": {"query": {"q": hostile}}})
    assert "<script>" not in out
    assert out == "<p>&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;</p>"


def test_markup_default_is_not_escaped_twice() -> None:
    out = render("<div>{{ slot.default }}</div>", {"slot": {"default": Markup("<b>Default</b>")}})
    assert out == "<div><b>Default</b></div>"


def test_template_text_itself_is_kept() -> None:
    assert render("<h1 class=\"hero\">Hello &amp; welcome</h1>") == "<h1 class=\"hero\">Hello &amp; welcome</h1>"


# ---------------------------------------------------------------- sandbox


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ (1).__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__['os'] }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ self.__init__.__globals__ }}",
        "{{ request.__class__.__subclasses__() }}",
        "{% set x = ''.__class__.__mro__ %}{{ x }}",
        "{{ (''|attr('__class__')).__mro__ }}",
    ],
)
def test_sandbox_refuses_escapes(source: str) -> None:
    with pytest.raises(RenderError, match="SecurityError|UndefinedError|unsafe"):
        render(source, {"request": {"path": "/"}})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ request.items.__self__.__class__ }}",
        "{{ ''.__class__|attr('__mro__') }}",
        "{{ '{0.__class__.__mro__}'.format('') }}",
        "{{ '{0.__globals__}'.format(cycler.__init__) }}",
        "{{ '%s'|format(''.__class__) }}",
    ],
)
def test_escapes_leak_nothing(source: str) -> None:
    # The sandbox either refuses or hands back an empty Undefined; never the object.
    try:
        out = render(source, {"request": {"path": "/"}})
    except RenderError:
        return
    assert "class" not in out and "object" not in out and "function" not in out and "os" not in out


# ---------------------------------------------------------------- size and time


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**9 }}",
        "{{ 10**9 * 'x' }}",
        "{{ [0] * 10**9 }}",
        "{{ ('a', 'b') * 10**8 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{{ 2 ** 100000 }}",
        "{% for i in range(10**6) %}x{% endfor %}",
    ],
)
def test_huge_values_are_refused(source: str) -> None:
    with pytest.raises(RenderError):
        render(source)


def test_output_is_cut_at_max_output_bytes() -> None:
    with pytest.raises(RenderError, match="longer than 256 bytes"):
        render("{% for i in range(1000) %}xxxxxxxxxx{% endfor %}", max_output_bytes=256)
    with pytest.raises(RenderError, match="longer than 256 bytes"):
        render("{{ 'y' * 99999 }}", max_output_bytes=256)
    assert render("{{ 'x' * 256 }}", max_output_bytes=256) == "x" * 256


def test_output_limit_counts_bytes_not_characters() -> None:
    assert render("{{ 'é' * 128 }}", max_output_bytes=256) == "é" * 128
    with pytest.raises(RenderError, match="longer than 256 bytes"):
        render("{{ 'é' * 129 }}", max_output_bytes=256)


@pytest.mark.parametrize(
    "source",
    [
        # No calls and no output inside: only a per-item check can stop these.
        "{% set s = 'x' * 99999 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
        "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
        "{% for i in range(99999) %}{% for j in range(99999) %}{% if j.bit_length() < 0 %}x{% endif %}"
        "{% endfor %}{% endfor %}",
    ],
)
def test_long_running_templates_are_stopped(source: str) -> None:
    r = renderer(timeout_ms=5)
    with pytest.raises(RenderError, match="too long"):
        r.render(r.compile(source), {})
    # The deadline was reset: the same renderer still renders.
    assert r.render(r.compile("ok"), {}) == b"ok"


def test_recursive_macro_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="RecursionError|too long"):
        render("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", timeout_ms=10_000)


def test_loops_still_behave_normally() -> None:
    source = (
        "{% for x in items if x != 'b' %}{{ loop.index }}/{{ loop.length }}{{ x }}"
        "{% if not loop.last %},{% endif %}{% else %}none{% endfor %}"
        "|{% for k, v in pairs|dictsort %}{{ k }}={{ v }};{% endfor %}"
        "|{% for n in tree recursive %}{{ n.name }}{% if n.kids %}({{ loop(n.kids) }}){% endif %}{% endfor %}"
        "|{% for x in [] %}x{% else %}empty{% endfor %}"
    )
    variables = {"items": ["a", "b", "c"], "pairs": {"z": 1, "a": 2},
                 "tree": [{"name": "r", "kids": [{"name": "k1", "kids": []}, {"name": "k2", "kids": []}]}]}
    assert render(source, variables) == "1/2a,2/2c|a=2;z=1;|r(k1k2)|empty"


def test_deadline_is_per_thread() -> None:
    r = renderer(timeout_ms=10_000)
    template = r.compile("{% for i in range(3) %}{{ i }}{% endfor %}")
    results: list[bytes] = []

    def worker() -> None:
        for _ in range(50):
            results.append(r.render(template, {}))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [b"012"] * 200


# ---------------------------------------------------------------- URL schemes


@pytest.mark.parametrize(
    "html",
    [
        '<a href="javascript:alert(1)">x</a>',
        "<a href='JaVaScRiPt:alert(1)'>x</a>",
        "<a href=javascript:alert(1)>x</a>",
        '<a HREF = "javascript:alert(1)">x</a>',
        '<a href=" javascript:alert(1)">x</a>',
        '<a href="java\tscript:alert(1)">x</a>',
        '<a href="java\nscript:alert(1)">x</a>',
        '<a href="&#106;avascript:alert(1)">x</a>',
        '<a href="javascript&colon;alert(1)">x</a>',
        '<img src="data:image/svg+xml;base64,PHN2Zz4=">',
        '<form action="vbscript:msgbox(1)"></form>',
        '<button formaction="javascript:alert(1)">go</button>',
        '<svg><a xlink:href="javascript:alert(1)">x</a></svg>',
        '<iframe src="file:///etc/passwd"></iframe>',
    ],
)
def test_disallowed_url_schemes_are_refused(html: str) -> None:
    with pytest.raises(RenderError):
        render(html)


def test_disallowed_scheme_from_a_variable_is_refused() -> None:
    with pytest.raises(RenderError, match="javascript"):
        render('<a href="{{ request.query.next }}">next</a>', {"request": {"query": {"next": "javascript:alert(1)"}}})


@pytest.mark.parametrize(
    "html",
    [
        '<a href="https://example.com/pricing?plan=pro&amp;ref=hero">Pricing</a>',
        "<a href='http://example.com/'>x</a>",
        '<a href="HTTPS://EXAMPLE.COM/">x</a>',
        '<a href="/pricing">x</a>',
        '<a href="#top">x</a>',
        '<a href="?q=1">x</a>',
        '<img src="//cdn.example.com/logo.png">',
        '<a href="mailto:sales@example.com">x</a>',
        '<a href="tel:+4930123456">x</a>',
        "<p>No links at all = fine</p>",
    ],
)
def test_allowed_urls_pass(html: str) -> None:
    assert render(html) == html


def test_allowed_schemes_are_configurable() -> None:
    with pytest.raises(RenderError, match="'http'"):
        render('<a href="http://example.com/">x</a>', schemes=["https"])
    assert render('<a href="https://example.com/">x</a>', schemes=["HTTPS"]) == '<a href="https://example.com/">x</a>'


# ---------------------------------------------------------------- template errors


@pytest.mark.parametrize(
    "source",
    [
        "{{ 1 / 0 }}",
        "{{ 1 // 0 }}",
        "{{ visitor.nope.deeper }}",
        "{{ nothing() }}",
        "{{ 'a' + 1 }}",
        "{{ {}['k'].x }}",
        "{{ range(1, 2, 0)|list }}",
        "{{ 'x'|attr('y')() }}",
        "{{ {'a': 1}|dictsort(by='nope') }}",
    ],
)
def test_template_errors_become_render_errors(source: str) -> None:
    with pytest.raises(RenderError):
        render(source, {"visitor": {"visits": 1}})


def test_undefined_plain_variable_renders_empty() -> None:
    assert render("[{{ missing }}]") == "[]"


# ---------------------------------------------------------------- static variants


def test_static_output() -> None:
    r = renderer()
    assert r.static_output("<b>plain</b>") == b"<b>plain</b>"
    assert r.static_output("<b>{{ x }}</b>") is None
    assert r.static_output("{% if x %}{% endif %}") is None
    assert r.static_output("{# note #}") is None
    with pytest.raises(RenderError):
        r.static_output('<a href="javascript:alert(1)">x</a>')
    with pytest.raises(RenderError):
        renderer(max_output_bytes=256).static_output("x" * 257)


# ---------------------------------------------------------------- in the core


def test_failed_variant_keeps_the_default_and_records_no_exposure(make_core_config: Callable[..., dict]) -> None:
    config = make_core_config(slots={
        "hero": {"rules": [{"if": {"path": "/"}, "variant": "broken", "template": "{{ 1 / 0 }}"}]},
        "cta": {"rules": [{"if": {"path": "/"}, "variant": "fine", "template": "<b>{{ request.path }}</b>"}]},
    })
    core = Personalizer(load_config(config))
    try:
        body = (b"<!-- personalize:hero -->Default hero<!-- /personalize:hero -->"
                b"<!-- personalize:cta -->Default cta<!-- /personalize:cta -->")
        ctx = RequestContext("GET", "http", "example.com", "/", "", {"user-agent": "Mozilla/5.0"})
        outcome = core.visit(ctx, body, time.time())
        assert outcome.body == (b"<!-- personalize:hero -->Default hero<!-- /personalize:hero -->"
                                b"<!-- personalize:cta --><b>/</b><!-- /personalize:cta -->")
        exposures = [r for r in outcome.records if r["type"] == "exposure"]
        assert [(r["slot"], r["variant"]) for r in exposures] == [("cta", "fine")]
    finally:
        core.queue.close()


def test_a_call_cannot_allocate_a_huge_string_before_the_output_limit() -> None:
    from personalize_mw.render import RenderError, VariantRenderer

    renderer = VariantRenderer(max_output_bytes=4096, timeout_ms=1000, allowed_url_schemes=["https"])
    for source in ("{{ 'x'.center(10**8) }}", "{{ 'x'.ljust(width=10**8) }}"):
        try:
            renderer.render(renderer.compile(source), {})
        except RenderError as exc:
            assert "large" in str(exc)
        else:
            raise AssertionError(f"{source} rendered")
    assert renderer.render(renderer.compile("{{ 'x'.center(5) }}"), {}) == b"  x  "


def test_output_cache_keys_on_every_value_the_template_reads() -> None:
    from personalize_mw.render import VariantRenderer, template_inputs

    renderer = VariantRenderer(max_output_bytes=4096, timeout_ms=1000, allowed_url_schemes=["https"])
    source = ("{% set n = visitor.visits %}{{ n }}|{{ request.query[slot.name] }}|"
              "{% for k in request.utm %}{{ k }}{% endfor %}|{{ visitor.goals | join(',') }}")
    inputs = set(template_inputs(renderer.env.parse(source)))
    # Locals (n, k) are read too; the external paths are what matter.
    assert {("request", "query"), ("request", "utm"), ("slot", "name"), ("visitor", "goals"),
            ("visitor", "visits")} <= inputs
    template = renderer.compile(source)

    def render(visits: int, query: dict, utm: dict, goals: list) -> bytes:
        return renderer.render(template, {"visitor": {"visits": visits, "goals": goals},
                                          "request": {"query": query, "utm": utm}, "slot": {"name": "hero"}})

    first = render(1, {"hero": "a"}, {"source": None}, ["x"])
    assert first == b"1|a|source|x"
    assert render(1, {"hero": "a"}, {"source": None}, ["x"]) == first  # served from the cache
    assert render(2, {"hero": "a"}, {"source": None}, ["x"]) == b"2|a|source|x"
    assert render(1, {"hero": "b"}, {"source": None}, ["x"]) == b"1|b|source|x"
    assert render(1, {"hero": "a"}, {"medium": None}, ["x"]) == b"1|a|medium|x"
    assert render(1, {"hero": "a"}, {"source": None}, ["x", "y"]) == b"1|a|source|x,y"


def test_output_cache_is_not_fooled_by_method_calls() -> None:
    # .get('q') reads a key of request.query: the cache must key on the query itself.
    from personalize_mw.render import VariantRenderer

    renderer = VariantRenderer(max_output_bytes=4096, timeout_ms=1000, allowed_url_schemes=["https"])
    template = renderer.compile("{{ request.query.get('q') }}|{% for k, v in request.utm.items() %}{{ v }}{% endfor %}")
    alice = {"request": {"query": {"q": "alice-secret"}, "utm": {"source": "a"}}}
    bob = {"request": {"query": {"q": "bob"}, "utm": {"source": "b"}}}
    assert renderer.render(template, alice) == b"alice-secret|a"
    assert renderer.render(template, bob) == b"bob|b"


@pytest.mark.parametrize("url", [
    "\x01javascript:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)", "java&Tab;script:alert(1)",
    "&#106;avascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>",
])
def test_url_schemes_are_checked_as_a_browser_reads_them(url: str) -> None:
    from personalize_mw.render import RenderError, VariantRenderer

    renderer = VariantRenderer(max_output_bytes=4096, timeout_ms=1000, allowed_url_schemes=["https"])
    literal = renderer.compile('<a href="' + url.replace("<", "&lt;") + '">x</a>')
    with pytest.raises(RenderError, match="not allowed"):
        renderer.render(literal, {})
    if "&" not in url:  # through a variable too (autoescaped)
        through = renderer.compile('<a href="{{ u }}">x</a>')
        with pytest.raises(RenderError, match="not allowed"):
            renderer.render(through, {"u": url})


def test_lipsum_and_huge_filter_arguments_are_refused() -> None:
    from personalize_mw.render import RenderError, VariantRenderer

    renderer = VariantRenderer(max_output_bytes=4096, timeout_ms=1000, allowed_url_schemes=["https"])
    for source in ("{{ lipsum(99999) }}", "{{ 'x' | center(10**8) }}", "{{ 'x' | indent(10**8, true) }}"):
        with pytest.raises(RenderError):
            renderer.render(renderer.compile(source), {})
    assert renderer.render(renderer.compile("{{ 'x' | center(3) }}"), {}) == b" x "


def test_output_cache_is_not_fooled_by_a_query_key_named_like_a_method() -> None:
    # After ?get=1, _resolve found a 'get' key where Jinja calls the method: the key must
    # be the whole query, else one visitor's rendering is served to another.
    from personalize_mw.render import VariantRenderer, template_inputs

    renderer = VariantRenderer(max_output_bytes=4096, timeout_ms=1000, allowed_url_schemes=["https"])
    source = "{{ request.query.get('q') }}|{{ visitor.items() | list | length }}"
    assert set(template_inputs(renderer.env.parse(source))) == {("request", "query"), ("visitor",)}
    template = renderer.compile(source)
    alice = {"request": {"query": {"get": "1", "q": "alice-secret"}}, "visitor": {"a": 1}}
    bob = {"request": {"query": {"get": "1", "q": "bob"}}, "visitor": {"a": 1, "b": 2}}
    assert renderer.render(template, alice) == b"alice-secret|1"
    assert renderer.render(template, bob) == b"bob|2"


@pytest.mark.parametrize("variant", [
    '<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;"></iframe>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<META HTTP-EQUIV=refresh content="0;url=https://evil.example">',
    '<object data="javascript:alert(1)"></object>',
    '<video poster="javascript:alert(1)"></video>',
    '<svg><animate attributeName="href" values="https://ok.example;javascript:alert(1)"/></svg>',
    '<svg><set attributeName="href" to="javascript:alert(1)"/></svg>',
])
def test_constructs_beyond_href_and_src_are_checked_or_refused(variant: str) -> None:
    from personalize_mw.render import RenderError, VariantRenderer

    renderer = VariantRenderer(max_output_bytes=4096, timeout_ms=1000, allowed_url_schemes=["https"])
    with pytest.raises(RenderError, match="not allowed"):
        renderer.render(renderer.compile(variant), {})


def test_safe_urls_in_those_attributes_pass() -> None:
    from personalize_mw.render import VariantRenderer

    renderer = VariantRenderer(max_output_bytes=4096, timeout_ms=1000, allowed_url_schemes=["https"])
    ok = '<object data="https://ok.example/x.svg"></object><p data-to="javascript:no">from a to b</p>'
    assert renderer.render(renderer.compile(ok), {}) == ok.encode()


@pytest.mark.parametrize("source", [
    "{{ '{:>99999999}'.format('x') }}", "{{ '{0:.99999999f}'.format(1.5) }}", "{{ '%99999999s' % 'x' }}",
    "{{ '%.99999999f' % 1.5 }}", "{{ '%*s' % (99999999, 'x') }}", "{{ ('x' * 90000).join(['a'] * 90000) }}",
    "{{ ('x' * 90000).replace('x', 'y' * 90000) }}", "{{ '%99999999s' | format('x') }}",
])
def test_string_operations_that_build_huge_values_are_refused(source: str) -> None:
    from personalize_mw.render import RenderError, VariantRenderer

    renderer = VariantRenderer(max_output_bytes=4096, timeout_ms=1000, allowed_url_schemes=["https"])
    # Refused before it is built, not cut at the output limit after 100 MB were allocated.
    with pytest.raises(RenderError, match="too large|not allowed"):
        renderer.render(renderer.compile(source), {})


def test_ordinary_string_operations_still_work() -> None:
    from personalize_mw.render import VariantRenderer

    renderer = VariantRenderer(max_output_bytes=4096, timeout_ms=1000, allowed_url_schemes=["https"])
    source = ("{{ '{:>5}'.format('x') }}|{{ '%3d' % 7 }}|{{ 7 % 3 }}|{{ ', '.join(['a', 'b']) }}|"
              "{{ 'aXb'.replace('X', '-') }}|{{ '%s-%s' | format(1, 2) }}")
    assert renderer.render(renderer.compile(source), {}) == b"    x|  7|1|a, b|a-b|1-2"
