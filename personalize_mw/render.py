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

import threading
import time
from typing import Any, Iterable, Mapping

import re
from jinja2 import Template, TemplateError, nodes
from jinja2.sandbox import SandboxedEnvironment, SecurityError

_MAX_BUILT = 100_000  # longest string/list a template may build with * or **


class RenderError(Exception):
    """A variant could not be rendered within its bounds."""


class _Deadline(threading.local):
    """Per thread: WSGI servers render for several requests at once."""

    at = float("inf")


class BoundedEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**"])

    def __init__(self, **options: Any) -> None:
        super().__init__(autoescape=True, **options)
        self.deadline = _Deadline()
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

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if time.perf_counter() > __self.deadline.at:
            raise SecurityError("template took too long")
        # 'x'.center(10**8) would allocate before any output limit could act.
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and abs(arg) > _MAX_BUILT:
                raise SecurityError("a number this large is not allowed in a template call")
        return super().call(__context, __obj, *args, **kwargs)


# href="javascript:..." and friends; the value may be quoted or not.
# Linear patterns (no nested repetition), so the stdlib engine is safe here and faster.
_URL_ATTR = re.compile(
    rb"""(?i)\b(?:href|src|action|formaction|xlink:href)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))"""
)
_SCHEME = re.compile(rb"^\s*([a-zA-Z][a-zA-Z0-9+.\-]*):")


class VariantRenderer:
    """Compiles variant templates once and renders them within bounds."""

    def __init__(self, max_output_bytes: int, timeout_ms: float, allowed_url_schemes: Iterable[str]) -> None:
        self.env = BoundedEnvironment()
        self.max_output_bytes = max_output_bytes
        self.timeout_s = timeout_ms / 1000.0
        self.allowed_schemes = frozenset(s.lower().encode() for s in allowed_url_schemes)

    def compile(self, source: str) -> Template:
        """Raises jinja2.TemplateSyntaxError with the template's line on a mistake."""
        return self.env.from_string(source)

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
        for match in _URL_ATTR.finditer(html):
            value = match.group(1) or match.group(2) or match.group(3) or b""
            # Browsers ignore tabs/newlines inside schemes and decode entities.
            cleaned = value.replace(b"\t", b"").replace(b"\n", b"").replace(b"\r", b"")
            scheme = _SCHEME.match(cleaned)
            if scheme and scheme.group(1).lower() not in self.allowed_schemes:
                raise RenderError(f"URL scheme {scheme.group(1).decode(errors='replace')!r} is not allowed")
            if b"&#" in cleaned or b"&colon" in cleaned.lower():
                raise RenderError("encoded characters in a URL attribute are not allowed")
