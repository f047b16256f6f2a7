"""The Django adapter: one line in ``MIDDLEWARE``, config from ``PERSONALIZE_CONFIG``.

    MIDDLEWARE = [..., "personalize_mw.django.PersonalizeMiddleware", ...]
    PERSONALIZE_CONFIG = BASE_DIR / "personalize.yaml"   # or a dict

Sync and async capable, so an ASGI Django project keeps its async path. Put
it above CsrfViewMiddleware: its consent endpoint does its own same-origin
check. For the ``{% load personalize %}`` tag, add ``"personalize_mw"`` to
``INSTALLED_APPS``.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from .config import load_config
from .core.consent_endpoint import MAX_BODY, EndpointResponse, handle_consent
from .core.event_endpoint import EventEndpoint
from .core.context import RequestContext
from .core.cookies import CookieSpec
from .core.headers import edit_headers
from .core.personalizer import NOTHING, Outcome, Personalizer, Plan
from .core.request_state import DJANGO_ATTRIBUTE, RequestState
from .core.stats_endpoint import handle_stats
from .wsgi import headers_from_environ

log = logging.getLogger("personalize_mw")


def request_context(request: HttpRequest, country_header: str) -> RequestContext:
    meta = request.META
    headers = headers_from_environ(meta)
    host = headers.get("host") or f"{meta.get('SERVER_NAME', 'localhost')}:{meta.get('SERVER_PORT', '80')}"
    return RequestContext(request.method or "GET", request.scheme or "http", host, request.path,
                          meta.get("QUERY_STRING", ""), headers, country_header, meta.get("REMOTE_ADDR"))


class PersonalizeMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        config = getattr(settings, "PERSONALIZE_CONFIG", None)
        if config is None:
            raise ImproperlyConfigured("Set PERSONALIZE_CONFIG to the path of personalize.yaml (or a dict).")
        self.core = Personalizer(load_config(config))
        self.events = EventEndpoint(self.core)
        self._endpoints = {p for p in (self.core.consent_path, self.events.path, self.core.stats_path) if p}
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self.__acall__(request)
        if self.core.enabled and request.path in self._endpoints:
            return self._endpoint(request)
        self._attach(request)
        response = self.get_response(request)
        return self._after(request, response) if self.core.enabled else response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self.core.enabled and request.path in self._endpoints:
            return self._endpoint(request)
        self._attach(request)
        response = await self.get_response(request)
        return self._after(request, response) if self.core.enabled else response

    def _attach(self, request: HttpRequest) -> None:
        """``request.personalize_mw``: where identify()/track() find this request's state."""
        state = RequestState(self.core, request, request_context) if self.core.enabled else None
        setattr(request, DJANGO_ATTRIBUTE, state)

    def _endpoint(self, request: HttpRequest) -> HttpResponse:
        """Our endpoints (consent, events, stats), answered here: the view stack never sees them."""
        if request.path == self.core.stats_path:
            return self._django_response(handle_stats(self.core, request.method or "GET"))
        is_consent = request.path == self.core.consent_path
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = request.read((MAX_BODY if is_consent else self.events.max_body) + 1) if length else b""
        ctx = request_context(request, self.core.country_header)
        answer: EndpointResponse = (handle_consent(self.core, ctx, body) if is_consent
                                    else self.events.handle(ctx, body))
        return self._django_response(answer)

    def _django_response(self, answer: EndpointResponse) -> HttpResponse:
        response = HttpResponse(answer.body, status=answer.status)
        if "content-type" not in {n for n, _ in answer.headers}:
            del response["Content-Type"]
        for name, value in answer.headers:
            response[name] = value
        self._set_cookies(response, answer.cookies)
        return response

    def _after(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        state: RequestState | None = getattr(request, DJANGO_ATTRIBUTE, None)
        content_type = response.get("Content-Type")
        plan = self.core.plan(request.method or "GET", request.path, response.status_code,
                              content_type, response.get("Content-Encoding"), state)
        if plan is Plan.PASS:
            return response
        body: bytes | None = None
        is_page = plan is Plan.PAGE
        if is_page and not response.streaming:
            content = response.content  # type: ignore[attr-defined]
            if len(content) <= self.core.buffer_limit:
                body = content
        outcome = self.core.visit_safely(state.context if state is not None else
                                         lambda: request_context(request, self.core.country_header),
                                         body, is_page, state, content_type)
        if outcome is NOTHING:
            return response
        try:
            self._apply(response, outcome)
        except Exception:
            log.exception("personalize_mw: header edit failed; original response served")
            return response
        self.core.commit(outcome, rewritten=outcome.body is not None)
        return response

    def _apply(self, response: HttpResponseBase, outcome: Outcome) -> None:
        new_body = outcome.body
        ours = Outcome(body=new_body, private=outcome.private, headers=outcome.headers)  # cookies go through Django's API
        edited = edit_headers(list(response.items()), ours, len(new_body) if new_body is not None else None)
        if new_body is not None:
            response.content = new_body  # type: ignore[attr-defined]
        for name in list(response.headers):
            del response.headers[name]
        for name, value in edited:
            response.headers[name] = value
        self._set_cookies(response, outcome.cookies)

    @staticmethod
    def _set_cookies(response: HttpResponseBase, cookies: list[CookieSpec]) -> None:
        # Django keeps cookies apart from headers: ours go through its API.
        for c in cookies:
            response.set_cookie(c.name, c.value, max_age=c.max_age, path=c.path, secure=c.secure,
                                httponly=c.http_only, samesite=c.same_site)
