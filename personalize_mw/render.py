"""Rendering marketers' variant templates: sandboxed, escaped, bounded.

Jinja2's sandbox stops attribute escapes but has no limit on output, time or
memory, and autoescape does not stop ``javascript:`` URLs. So:
- autoescape is on (the sandbox defaults it off);
- ``*`` and ``**`` are intercepted and refuse to build huge values;
- every call made by the template checks a deadline, and output is produced
  chunk by chunk and cut off past ``max_output_bytes``;
- ``href``/``src``/``action`` values in the output must use an allowed scheme.
Any failure raises :class:`RenderError`; the caller then keeps the default content.
"""

from __future__ import annotations

import functools
import html as html_module
import re
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from cachetools import LRUCache
from jinja2 import StrictUndefined, Template, TemplateError, UndefinedError, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from .errors import PersonalizeError

_MAX_BUILT = 100_000  # longest string/list a template may build with * or **


class RenderError(PersonalizeError):
    """A variant could not be rendered within its bounds."""


class TraitMissing(RenderError):
    """The variant reads a merge field the view did not give: the block keeps its own content."""


class _TraitUndefinedError(UndefinedError, PersonalizeError):
    """Raised inside Jinja for a missing merge field; render() turns it into :class:`TraitMissing`."""


class _MissingTrait(StrictUndefined):
    """Fails when printed or tested, but ``| default(...)`` and ``is defined`` see it as undefined."""

    __slots__ = ()


class Traits(dict[str, Any]):
    """``visitor.traits``: the merge fields of this request; a missing one is :class:`_MissingTrait`."""

    def __missing__(self, key: str) -> Any:
        return _MissingTrait(name=key, exc=_TraitUndefinedError)


class _NoTraits(Traits):
    """The one mapping every render without merge fields shares: a template cannot write into it."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("visitor.traits cannot be changed")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = __ior__ = _refuse


NO_TRAITS: Traits = _NoTraits()


class _Deadline(threading.local):
    """Per thread: WSGI servers render for several requests at once."""

    at = float("inf")


class BoundedEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**", "%"])

    def __init__(self, **options: Any) -> None:
        super().__init__(autoescape=True, **options)
        self.deadline = _Deadline()
        # lipsum(99999) builds megabytes of text in one call, whatever the limits.
        self.globals.pop("lipsum", None)
        # Filters are called directly by compiled templates, not through call():
        # give them the same argument bound ({{ 'x' | center(10**8) }}).
        self.filters = {name: _bounded(f) for name, f in self.filters.items()}
        self.filters["format"] = _bounded_format(self.filters["format"])  # '%99999999s' | format('x')
        self.filters["_pmw_deadline"] = self._until_deadline

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Loops that call nothing and print nothing never reach the other checks
        # ({% for a in s %}{% for b in s %}{% endfor %}{% endfor %}): check per item.
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_pmw_deadline", [], [], None, None, lineno=loop.lineno)
        return tree

    def _until_deadline(self, iterable: Iterable[Any]) -> Iterable[Any]:
        deadline = self.deadline
        for item in iterable:
            if time.perf_counter() > deadline.at:
                raise SecurityError("template took too long")
            yield item

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "%":
            if isinstance(left, str):  # '%99999999s' % 'x' allocates before any output limit
                _check_widths(left, _PERCENT_WIDTH)
                _check_numbers(right if isinstance(right, tuple) else (right,), {})  # '%*s' % (10**8, 'x')
            return left % right
        if operator == "**":
            if isinstance(right, (int, float)) and abs(right) > 64:
                raise SecurityError("exponent too large")
            return left**right
        if isinstance(left, int) and not isinstance(right, (int, float)):
            left, right = right, left
        if isinstance(left, (str, list, tuple)) and isinstance(right, int):
            if len(left) * right > _MAX_BUILT:
                raise SecurityError("value built with * is too large")
        return left * right

    def wrap_str_format(self, value: Any) -> Any:
        # Jinja wraps str.format at attribute access (so call() never sees it): check here.
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            _check_widths(owner, _FORMAT_WIDTH)
        return super().wrap_str_format(value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if time.perf_counter() > __self.deadline.at:
            raise SecurityError("template took too long")
        _check_numbers(args, kwargs)
        args = _check_str_method(__obj, args)
        return super().call(__context, __obj, *args, **kwargs)


def _check_numbers(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """'x'.center(10**8) would allocate before any output limit could act."""
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and abs(arg) > _MAX_BUILT:
            raise SecurityError("a number this large is not allowed in a template call")


_PERCENT_WIDTH = re.compile(r"%[#0\- +]*(\d*)(?:\.(\d*))?")
_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}\d]*(\d+)(?:\.(\d+))?")


def _check_widths(template: str, pattern: re.Pattern[str]) -> None:
    for match in pattern.finditer(template):
        for number in match.groups():
            if number and int(number) > _MAX_BUILT:
                raise SecurityError("a width or precision this large is not allowed in a template")


def _check_str_method(method: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """join and replace can build huge strings from small ones: predict the size first (format: above)."""
    owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
    if not isinstance(owner, str):
        return args
    if name == "join" and args:
        items = list(args[0])  # a generator is read once, here, and handed on as a list
        size = len(owner) * max(0, len(items) - 1) + sum(len(i) for i in items if isinstance(i, str))
        if size > _MAX_BUILT:
            raise SecurityError("value built with join is too large")
        return (items, *args[1:])
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        old, new = args[0], args[1]
        count = owner.count(old) if old else len(owner) + 1
        if len(owner) + count * (len(new) - len(old)) > _MAX_BUILT:
            raise SecurityError("value built with replace is too large")
    return args


def _bounded_format(function: Any) -> Any:
    @functools.wraps(function)
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str):
            _check_widths(value, _PERCENT_WIDTH)
        return function(value, *args, **kwargs)
    return bounded


def _bounded(function: Any) -> Any:
    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_numbers(args, kwargs)
        return function(*args, **kwargs)
    return bounded


# href="javascript:..." and friends; the value may be quoted or not.
# Linear patterns (no nested repetition), so the stdlib engine is safe here and faster.
# Attributes a browser follows as a URL; SVG animation values (values, to, from) can
# set an href, and a list in ``values`` is ;-separated, so each item is checked.
_URL_ATTR = re.compile(
    rb"""(?i)(?<![\w-])(href|src|action|formaction|xlink:href|data|poster|background|ping|cite|codebase|"""
    rb"""values|to|from)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))"""
)
# Constructs that carry a document or a navigation no scheme check can see into: refused.
_REFUSED_ATTR = re.compile(rb"(?i)(?<![\w-])(srcdoc|http-equiv)\s*=")
_LISTS = frozenset({b"values"})
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.\-]*):")
_INVISIBLE = re.compile(r"[\t\n\r]")


class VariantRenderer:
    """Compiles variant templates once and renders them within bounds."""

    def __init__(self, max_output_bytes: int, timeout_ms: float, allowed_url_schemes: Iterable[str]) -> None:
        self.env = BoundedEnvironment()
        self.max_output_bytes = max_output_bytes
        self.timeout_s = timeout_ms / 1000.0
        self.allowed_schemes = frozenset(s.lower() for s in allowed_url_schemes)
        self._inputs: dict[Template, tuple[tuple[Any, ...], ...]] = {}
        self._outputs: LRUCache[Any, bytes] = LRUCache(maxsize=_CACHE_ENTRIES)
        self._lock = threading.Lock()

    def compile(self, source: str) -> Template:
        """Raises jinja2.TemplateSyntaxError with the template's line on a mistake."""
        template = self.env.from_string(source)
        self._inputs[template] = template_inputs(self.env.parse(source))
        return template

    def inputs(self, template: Template) -> tuple[tuple[Any, ...], ...] | None:
        """The variable paths ``template`` reads (:func:`template_inputs`); None for one compiled elsewhere."""
        return self._inputs.get(template)

    def static_output(self, source: str) -> bytes | None:
        """The bytes of a template with no Jinja syntax, checked once; None if it has some.

        Most variants are plain HTML: rendering them per request would cost a
        Jinja context for nothing.
        """
        if "{{" in source or "{%" in source or "{#" in source:
            return None
        out = source.encode("utf-8")
        if len(out) > self.max_output_bytes:
            raise RenderError(f"output longer than {self.max_output_bytes} bytes")
        self._check_urls(out)
        return out

    def render(self, template: Template, variables: Mapping[str, Any]) -> bytes:
        """The variant's bytes; the same inputs give the same output, so it is cached.

        A template is a pure function of the variable paths it reads (see
        :func:`template_inputs`): their values are the cache key. Only small
        outputs are kept, so the cache stays within ~4 MB.
        """
        paths = self._inputs.get(template)
        if paths is None:
            return self._render(template, variables)
        key = (template, tuple(freeze(_resolve(variables, path)) for path in paths))
        with self._lock:
            cached = self._outputs.get(key)
        if cached is not None:
            return cached
        out = self._render(template, variables)
        if len(out) <= _CACHED_OUTPUT_BYTES:
            with self._lock:
                self._outputs[key] = out
        return out

    def _render(self, template: Template, variables: Mapping[str, Any]) -> bytes:
        self.env.deadline.at = time.perf_counter() + self.timeout_s
        limit = self.max_output_bytes
        size = 0
        chunks: list[str] = []
        try:
            for chunk in template.generate(variables):
                size += len(chunk)
                if size > limit:  # characters <= bytes; the exact check follows
                    raise RenderError(f"output longer than {limit} bytes")
                if time.perf_counter() > self.env.deadline.at:
                    raise RenderError("render took too long")
                chunks.append(chunk)
        except _TraitUndefinedError as exc:
            raise TraitMissing(str(exc)) from None
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, AttributeError,
                RecursionError, MemoryError) as exc:  # a recursive macro, a huge str.center()
            raise RenderError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.env.deadline.at = float("inf")
        out = "".join(chunks).encode("utf-8")
        if len(out) > limit:
            raise RenderError(f"output longer than {limit} bytes")
        self._check_urls(out)
        return out

    def _check_urls(self, html: bytes) -> None:
        if b"=" not in html:
            return
        refused = _REFUSED_ATTR.search(html)
        if refused:  # iframe srcdoc holds a whole document; <meta http-equiv=refresh> navigates
            raise RenderError(f"the {refused.group(1).decode().lower()!r} attribute is not allowed in variants")
        for match in _URL_ATTR.finditer(html):
            value = match.group(2) or match.group(3) or match.group(4) or b""
            items = value.split(b";") if match.group(1).lower() in _LISTS else [value]
            for item in items:
                # As a browser reads it: entities decoded (&Tab;, &#106;), tabs and
                # newlines removed anywhere, controls and spaces stripped in front.
                url = html_module.unescape(item.decode("utf-8", "replace"))
                url = _INVISIBLE.sub("", url).lstrip("".join(map(chr, range(0x21))))
                scheme = _SCHEME.match(url)
                if scheme and scheme.group(1).lower() not in self.allowed_schemes:
                    raise RenderError(f"URL scheme {scheme.group(1)!r} is not allowed")


# ---------------------------------------------------------------- output cache

_CACHE_ENTRIES = 1024
_CACHED_OUTPUT_BYTES = 4096
_MISSING = object()
_MAPPING_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))


def template_inputs(ast: nodes.Template) -> tuple[tuple[Any, ...], ...]:
    """Every variable path the template reads: ('visitor', 'visits'), ('request', 'utm'), ...

    Data enters a template only through names, so the values at these paths
    determine its output. A chain with a computed key (``query[name]``) is cut
    there and its stem recorded whole: coarser, never wrong.
    """
    found: set[tuple[Any, ...]] = set()

    def walk(node: nodes.Node) -> None:
        path: list[Any] = []
        current = node
        while isinstance(current, (nodes.Getattr, nodes.Getitem)):
            if isinstance(current, nodes.Getattr):
                # ``query.get`` is the mapping's method (Jinja tries attributes first), which
                # reads all of it: the path stops before it, keyed on the whole mapping.
                path = [] if current.attr in _MAPPING_METHODS else path + [current.attr]
            elif isinstance(current.arg, nodes.Const):
                path.append(current.arg.value)
            else:
                break
            current = current.node
        if isinstance(current, nodes.Name) and path:
            found.add((current.name, *reversed(path)))
            return
        if isinstance(current, nodes.Name) and current is not node:  # a method straight on a name
            found.add((current.name,))
            return
        if isinstance(node, nodes.Name):
            found.add((node.name,))
        for child in node.iter_child_nodes():
            walk(child)

    walk(ast)
    return tuple(sorted(found, key=repr))


def _resolve(variables: Mapping[str, Any], path: tuple[Any, ...]) -> Any:
    """The value at ``path``, stopping at the first non-mapping (its methods read only it)."""
    # A name that is not a variable is a local ({% set %}, a loop) or a global:
    # locals derive from recorded paths, globals are constant.
    return walk(variables.get(path[0], _MISSING), path[1:])


def walk(value: Any, keys: tuple[Any, ...]) -> Any:
    """Down ``keys`` from ``value`` as :func:`_resolve` does, for a value already found."""
    for key in keys:
        # A key the mapping lacks is a method (.get, .items) reading all of it:
        # key on the whole mapping then. Plain dict checks: typing.Mapping is slow.
        if not isinstance(value, dict) or key not in value:
            return value
        value = value[key]
    return value


def freeze(value: Any) -> Any:
    """A hashable stand-in for a variable's value: equal values, equal stand-ins."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value
