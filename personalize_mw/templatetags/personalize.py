"""``{% load personalize %}`` then ``{% personalize "hero" %}default{% endpersonalize %}``.

Emits the wire format only; the middleware fills the block.
"""

from __future__ import annotations

from django import template
from django.template.base import Parser, Token
from django.utils.safestring import SafeString, mark_safe

from ..core.markers import SLOT_NAME, wrap_block

register = template.Library()


class PersonalizeNode(template.Node):
    def __init__(self, name: str, nodelist: template.NodeList) -> None:
        self.name = name
        self.nodelist = nodelist

    def render(self, context: template.Context) -> SafeString:
        # The block's content is rendered (and escaped) by Django as usual.
        return mark_safe(wrap_block(self.name, self.nodelist.render(context)))


@register.tag("personalize")
def do_personalize(parser: Parser, token: Token) -> PersonalizeNode:
    bits = token.split_contents()
    if len(bits) != 2 or bits[1][0] not in "'\"" or bits[1][0] != bits[1][-1]:
        raise template.TemplateSyntaxError('usage: {% personalize "slot-name" %}…{% endpersonalize %}')
    name = bits[1][1:-1]
    if not SLOT_NAME.match(name):
        raise template.TemplateSyntaxError(f"slot name {name!r} must match [a-z0-9_-]+")
    nodelist = parser.parse(("endpersonalize",))
    parser.delete_first_token()
    return PersonalizeNode(name, nodelist)
