"""The Django adapter: one line in ``MIDDLEWARE``, config from ``PERSONALIZE_CONFIG``.

    MIDDLEWARE = [..., "personalize_mw.django.PersonalizeMiddleware", ...]
    PERSONALIZE_CONFIG = BASE_DIR / "personalize.yaml"   # or a dict

Sync and async capable, so an ASGI Django project keeps its async path. Put
it above CsrfViewMiddleware: its consent, event and privacy endpoints do their
own same-origin check. For the ``{% load personalize %}`` tag, add ``"personalize_mw"`` to
``INSTALLED_APPS``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from .config import load_config
from .core.consent_endpoint import EndpointResponse
from .core.context import RequestContext
from .core.cookies import CookieSpec
from .core.endpoints import endpoint_table
from .core.headers import safe_header_value
from .core.personalizer import Personalizer, Plan
from .core.request_state import DJANGO_ATTRIBUTE, RequestState
from .core.response import ResponseFlow, Step
from .wsgi import headers_from_environ, peek

log = logging.getLogger("personalize_mw")


def request_context(request: HttpRequest, country_header: str) -> RequestContext:
    meta = request.META
    headers = headers_from_environ(meta)
    host = headers.get("host") or f"{meta.get('SERVER_NAME', 'localhost')}:{meta.get('SERVER_PORT', '80')}"
    return RequestContext(request.method or "GET", request.scheme or "http", host, request.path,
                          meta.get("QUERY_STRING", ""), headers, country_header, meta.get("REMOTE_ADDR"))


# The request's state reads the request through a weak reference: the request holds the
# state, and a state holding the request would put both on a cycle only the GC frees.
# Whoever calls identify()/track() holds the request, so the reference holds while needed.
def _context_of(request: weakref.ref[HttpRequest], country_header: str) -> RequestContext:
    alive = request()
    if alive is None:
        raise RuntimeError("personalize_mw: the request's state outlived its request")
    return request_context(alive, country_header)


def _peek(request: weakref.ref[HttpRequest]) -> tuple[str | None, str]:
    alive = request()
    return peek(alive.META) if alive is not None else (None, "")


class PersonalizeMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        config = getattr(settings, "PERSONALIZE_CONFIG", None)
        if config is None:
            raise ImproperlyConfigured("Set PERSONALIZE_CONFIG to the path of personalize.yaml (or a dict).")
        self.core = Personalizer(load_config(config))
        self.endpoints = endpoint_table(self.core)
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        if request.path in self.endpoints:
            return self._endpoint(request)
        state = self._attach(request)
        response = self.get_response(request)
        return self._after(state, request, response) if state is not None else response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        endpoint = self.endpoints.get(request.path)
        if endpoint is not None:
            return await asyncio.to_thread(self._endpoint, request) if endpoint.blocking else self._endpoint(request)
        state = self._attach(request)
        response = await self.get_response(request)
        return self._after(state, request, response) if state is not None else response

    def _attach(self, request: HttpRequest) -> RequestState | None:
        """``request.personalize_mw``: where identify()/track() find this request's state."""
        state = RequestState(self.core, weakref.ref(request), _context_of, _peek) if self.core.enabled else None
        setattr(request, DJANGO_ATTRIBUTE, state)
        return state

    def _endpoint(self, request: HttpRequest) -> HttpResponse:
        """Our endpoints (consent, events, privacy, stats), answered here: the view stack never sees them."""
        endpoint = self.endpoints[request.path]
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = request.read(endpoint.max_body + 1) if length and endpoint.max_body else b""
        answer = endpoint.handle(request_context(request, self.core.country_header), body)
        return self._django_response(answer)

    def _django_response(self, answer: EndpointResponse) -> HttpResponse:
        response = HttpResponse(answer.body, status=answer.status)
        if "content-type" not in {n for n, _ in answer.headers}:
            del response["Content-Type"]
        for name, value in answer.safe_headers():
            response[name] = value
        self._set_cookies(response, answer.cookies)
        return response

    def _after(self, state: RequestState, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        method, content_type = request.method or "GET", response.get("Content-Type")
        plan = self.core.plan(method, request.path, response.status_code, content_type,
                              response.get("Content-Encoding"), state)
        if plan is Plan.PASS:  # nothing to hold, edit or record: no flow
            return response
        flow = ResponseFlow(self.core, state, method, request.path)
        step = flow.begin(plan, content_type)
        if step is Step.BUFFER:
            if response.streaming:
                flow.stream()
            else:
                flow.finish(response.content)  # type: ignore[attr-defined]  # not streaming: an HttpResponse
        headers = list(response.items())
        edited = flow.head(headers)
        if edited is headers:
            flow.sent()  # unchanged, but it may still have a pageview to record
            return response
        try:
            self._apply(response, flow, edited)
        except Exception:
            log.exception("personalize_mw: header edit failed; original response served")
            return response
        flow.sent()
        return response

    def _apply(self, response: HttpResponseBase, flow: ResponseFlow, edited: list[tuple[str, str]]) -> None:
        if flow.rewritten:
            response.content = flow.body  # type: ignore[attr-defined]  # rewritten: it was buffered, not streaming
        for name in list(response.headers):
            del response.headers[name]
        for name, value in edited:
            if name != "set-cookie":  # Django keeps cookies apart from headers: ours go through its API
                response.headers[name] = value
        self._set_cookies(response, flow.outcome.cookies)

    @staticmethod
    def _set_cookies(response: HttpResponseBase, cookies: list[CookieSpec]) -> None:
        for c in cookies:
            if not safe_header_value("set-cookie", c.header_value()):
                continue
            response.set_cookie(c.name, c.value, max_age=c.max_age, path=c.path, secure=c.secure,
                                httponly=c.http_only, samesite=c.same_site)
            # Django's SimpleCookie quotes a value with '=' (the consent cookie's), and browsers keep
            # the quotes; the value goes out as the ASGI and WSGI adapters send it (checked just above).
            response.cookies[c.name].set(c.name, c.value, c.value)
