"""One request's personalize_mw state, where view code can reach it.

The adapters attach a :class:`RequestState` to every request they handle:
``scope["personalize_mw.state"]`` (ASGI), ``environ["personalize_mw.state"]``
(WSGI) or ``request.personalize_mw`` (Django). It costs one small object per
request; the request context inside is built only when someone asks.

``context()`` keeps its merge fields in ``traits``.
``identify()`` and ``track()`` leave a :class:`~.events.Requested` here. The
visit that follows the view turns it into a record with the visitor, session
and channel that the response's cookie carries (a first visit's new id
included), and the adapter queues it once the response is sent. A call made
after the response was decided (a background task) is recorded at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .context import RequestContext
from .events import Requested

if TYPE_CHECKING:
    from .personalizer import Personalizer, SeenVisitor

STATE_KEY = "personalize_mw.state"  # ASGI scope key and WSGI environ key
DJANGO_ATTRIBUTE = "personalize_mw"  # HttpRequest attribute

ContextBuilder = Callable[[Any, str], RequestContext]
# The raw Cookie header and query string of a request, read without building its context.
Peek = Callable[[Any], "tuple[str | None, str]"]


def _as_built(ctx: RequestContext, _country_header: str) -> RequestContext:
    return ctx


class RequestState:
    __slots__ = ("core", "_source", "_build", "_peek", "_ctx", "_visitor", "pending", "base", "identified",
                 "decided", "page_path", "traits")

    def __init__(self, core: Personalizer, source: Any, build: ContextBuilder, peek: Peek | None = None) -> None:
        self.core = core
        # What the context is read from: the adapter's copy of the scope or environ (which hold
        # this state: reading them would close a cycle), or a weak reference to Django's request.
        self._source = source
        self._build = build
        self._peek = peek
        self._ctx: RequestContext | None = None
        self._visitor: SeenVisitor | None = None
        self.pending: list[Requested] = []
        self.base: dict[str, Any] | None = None  # the record fields the visit settled on
        self.identified = False  # the visit had a visitor id it may record
        self.decided = False  # the response is on its way: no visit is coming for new calls
        self.page_path: str | None = None  # records' path when not the request's (the event endpoint)
        self.traits: dict[str, Any] | None = None  # merge fields from context(): templates only, unless recorded

    @classmethod
    def of_request(cls, core: Personalizer, request: Mapping[str, Any], build: ContextBuilder,
                   peek: Peek) -> RequestState:
        """The state of an ASGI or WSGI request, reading a copy of its scope or environ as it came:
        the scope holds the state (a state holding the scope would close a cycle that only the
        garbage collector frees), and a server may reuse it after the response, when the
        sink's thread reads it (``later_context``)."""
        return cls(core, dict(request), build, peek)

    def context(self) -> RequestContext:
        if self._ctx is None:
            self._ctx = self._build(self._source, self.core.country_header)
            self._source = None  # read no more: peek and later_context ask only before the context exists
        return self._ctx

    def peek(self) -> tuple[str | None, str]:
        """The raw Cookie header and query string: enough to tell a page nothing of ours changes."""
        if self._ctx is None and self._peek is not None:
            return self._peek(self._source)
        ctx = self.context()
        return ctx.headers.get("cookie"), ctx.query_string

    def later_context(self) -> tuple[ContextBuilder, Any]:
        """How to build the context in the sink's thread, after the response: a builder and what
        it reads (the adapter's copy of the request), or, once built, the context itself."""
        if self._ctx is None and type(self._source) is dict:  # the adapter's own copy of the scope or environ
            return self._build, self._source
        return _as_built, self.context()

    def visitor(self, ctx: RequestContext | None = None) -> SeenVisitor:
        """Cookies, consent and profile as this request came: read once, whoever asks first."""
        if self._visitor is None:
            self._visitor = self.core.read_visitor(ctx if ctx is not None else self.context())
        return self._visitor

    def add(self, item: Requested) -> bool:
        """Keep a call for the visit, or record it now if the visit is over; False if not recorded."""
        self.pending.append(item)
        if self.decided:
            return self.core.record_late(self)
        return True
