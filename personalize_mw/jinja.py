"""A Jinja2 extension for template authors: ``{% personalize "hero" %}…{% endpersonalize %}``.

It only emits the wire format (``<!-- personalize:hero -->…<!-- /personalize:hero -->``);
the middleware fills the block, so templates stay engine-agnostic and the
default content is what a visitor sees whenever the middleware does not act.

    env = Environment(extensions=["personalize_mw.jinja.PersonalizeExtension"])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.ext import Extension
from jinja2.parser import Parser
from markupsafe import Markup

from .core.markers import SLOT_NAME, wrap_block


class PersonalizeExtension(Extension):
    tags = {"personalize"}

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        name = parser.parse_expression()
        if isinstance(name, nodes.Const) and not SLOT_NAME.match(str(name.value)):
            raise TemplateSyntaxError(f"slot name {name.value!r} must match [a-z0-9_-]+", lineno,
                                      parser.name, parser.filename)
        body = parser.parse_statements(("name:endpersonalize",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", [name]), [], [], body).set_lineno(lineno)

    def _render(self, name: str, caller: Callable[[], Any]) -> Markup:
        # caller() is already escaped markup; the wrapper adds only fixed text.
        return Markup(wrap_block(str(name), caller()))
