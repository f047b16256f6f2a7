"""One response through personalize_mw: the sans-I/O pipeline every adapter drives.

The adapters (ASGI, WSGI, Django) only translate their framework's messages
to these calls and back; every rule of the response contract lives here:

    flow = ResponseFlow(core, state, method, path)
    step = flow.start(status, content_type, content_encoding)
    # PASS:   forward the head and the body as they are; nothing more to call
    # SEND:   send flow.head(headers) now, then the body as it is; then flow.sent()
    # BUFFER: hold the head; flow.feed(chunk) for each chunk, then
    #         body = flow.finish() and send flow.head(headers) with it; then flow.sent()
    #         (feed() returning False means "over the limit": send flow.head(headers),
    #         then flow.held(), then stream the rest as it comes; then flow.sent())

Nothing is decided from the body until the whole of it is here (or the
buffer limit is passed, whatever the chunking), so an internal failure can
still serve the original head and body. ``head()`` never raises: if editing
fails, the app's own headers come back and nothing is recorded.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import TYPE_CHECKING

from .headers import edit_headers
from .markers import has_markers
from .personalizer import HEAD_OUTCOME, NOTHING, Outcome, Plan

if TYPE_CHECKING:
    from ..touchpoints.record import LazyRecord
    from .personalizer import Personalizer
    from .request_state import RequestState

log = logging.getLogger("personalize_mw")

Headers = list[tuple[str, str]]


class Step(Enum):
    PASS = 0  # not ours: forward byte for byte
    SEND = 1  # headers only: send head() now, the body unchanged
    BUFFER = 2  # a page: feed() the body, then finish()


class ResponseFlow:
    __slots__ = ("core", "state", "method", "path", "plan", "content_type", "outcome", "body",
                 "_chunks", "_size", "_original", "_edited", "_later")

    def __init__(self, core: Personalizer, state: RequestState, method: str, path: str) -> None:
        self.core = core
        self.state: RequestState | None = state  # None once sent(): see there
        self.method = method
        self.path = path
        self.plan = Plan.PASS
        self.content_type: str | None = None
        self.outcome: Outcome = NOTHING
        self.body: bytes = b""  # after finish(): the body to send
        self._chunks: list[bytes] = []
        self._size = 0
        self._original: bytes | None = None  # the app's body, while ours may replace it
        self._edited = False  # our head went out: what it carried may be recorded
        self._later: list[LazyRecord] | None = None  # records of a page we left as it was

    # ------------------------------------------------------------ the head

    def start(self, status: int, content_type: str | None, content_encoding: str | None) -> Step:
        """Decide from the head alone; called again if the app starts over (WSGI exc_info)."""
        state = self.state
        assert state is not None, "start() after sent()"
        return self.begin(self.core.plan(self.method, self.path, status, content_type, content_encoding,
                                         state), content_type)

    def begin(self, plan: Plan, content_type: str | None) -> Step:
        """:meth:`start` with the head planned already: an adapter that asks ``core.plan`` first
        makes no flow at all for a response that passes."""
        self.content_type = content_type
        if (self._chunks or self.outcome is not NOTHING or self._later is not None
                or self._original is not None):  # the app starts over (WSGI exc_info): forget the first try
            self._chunks, self._size, self._original, self.outcome, self._later = [], 0, None, NOTHING, None
        self.plan = plan
        if plan is Plan.PAGE:
            return Step.BUFFER
        if plan is Plan.PASS:
            return Step.PASS
        if plan is Plan.HEAD:
            self.outcome = HEAD_OUTCOME
        else:  # a goal, or view code's identify()/track() on a non-page response
            state = self.state
            assert state is not None, "begin() after sent()"
            self.outcome = self.core.visit_safely(state.context, None, False, state, content_type)
        return Step.SEND

    # ------------------------------------------------------------ the body

    def feed(self, chunk: bytes) -> bool:
        """Hold one chunk of the page; False once the buffer limit is passed (then decided)."""
        if chunk:
            self._chunks.append(chunk)
            self._size += len(chunk)
            if self._size > self.core.buffer_limit:
                self.stream()
                return False
        return True

    def held(self) -> bytes:
        """What was held when the flow gave up: sent after the head, before the rest streams."""
        held, self._chunks = b"".join(self._chunks), []
        return held

    def finish(self, last: bytes = b"") -> None:
        """The whole page is here: decide; ``body`` is what to send after ``head()``."""
        chunks = self._chunks
        if last:
            chunks.append(last)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self.body = body
        if len(body) > self.core.buffer_limit:  # over the limit in one piece is over the limit
            self.stream()
            return
        state = self.state
        assert state is not None, "finish() after sent()"
        marked = True
        try:
            marked = has_markers(body)  # once: the quick path and the visit both need to know
            self._later = self.core.pageview_only(state, body, self.path, marked)
        except Exception:
            log.exception("personalize_mw: internal error; the page is visited the long way")
        if self._later is not None:
            return  # nothing of ours changes this page: the app's head and body go out as they are
        outcome = self.outcome = self.core.visit_safely(state.context, body, True, state,
                                                        self.content_type, marked)
        if outcome.body is not None:
            self._original, self.body = body, outcome.body

    def stream(self) -> None:
        """The page is not to be held (too large, streaming, a pathsend): decide without it."""
        self.plan = Plan.PASS  # what comes after streams through
        state = self.state
        assert state is not None, "stream() after sent()"
        self.outcome = self.core.visit_safely(state.context, None, True, state, self.content_type)

    # ------------------------------------------------------------ the final head

    def head(self, headers: Headers) -> Headers:
        """The headers to send; never raises (a failed edit gives back the app's head and body)."""
        outcome = self.outcome
        if outcome is NOTHING:
            return headers
        rewritten = self._original is not None
        try:
            edited = edit_headers(headers, outcome, len(self.body) if rewritten else None)
        except Exception:
            log.exception("personalize_mw: header edit failed; original response served")
            if self._original is not None:
                self.body, self._original = self._original, None
            self.outcome = NOTHING
            return headers
        self._edited = True
        return edited

    @property
    def rewritten(self) -> bool:
        """The body to send is ours, not the app's."""
        return self._original is not None

    def sent(self) -> None:
        """The head (and body) went out: record what it carried, then let go of the request.

        The request's state holds this flow (it is the adapter's responder), and the
        scope or environ holds the state: a reference back from here would make a
        cycle that keeps the page and its rewrite (~100 KB a page) alive until the
        next garbage collection. So the flow drops the state, both bodies and the outcome here.
        """
        if self._later is not None:
            later, self._later = self._later, None
            self.core.emit_later(later)
        if self._edited:
            self._edited = False
            self.core.commit(self.outcome, rewritten=self.rewritten)
        self.state, self.outcome = None, NOTHING
        self.body, self._original = b"", None
