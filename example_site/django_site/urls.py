"""The site's routes (example_site/pages.py) as Django views."""

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_http_methods

import personalize_mw
from example_site.content import page_context
from example_site.pages import NOT_FOUND, ROUTES, Outcome, Page, Redirect, Visit


def respond(request: HttpRequest, outcome: Outcome) -> HttpResponse:
    if isinstance(outcome, Page):
        personalize_mw.context(request, **outcome.traits)
        context = page_context(request.COOKIES, request.path, request.META.get("QUERY_STRING", ""))
        return render(request, outcome.template, {**context, **outcome.context}, status=outcome.status)
    if isinstance(outcome, Redirect):
        return HttpResponse(status=outcome.status, headers={"location": outcome.location})
    return HttpResponse(outcome.body, content_type=outcome.media_type,
                        headers={"content-disposition": outcome.disposition})


def view(page: Callable[[Visit], Outcome], methods: tuple[str, ...]) -> Callable[..., HttpResponse]:
    @require_http_methods([*methods, "HEAD"])  # HEAD as the other two frameworks answer it
    def endpoint(request: HttpRequest, **params: str) -> HttpResponse:
        return respond(request, page(Visit(request.method or "GET", request.GET, request.POST, params)))
    return endpoint


def not_found(request: HttpRequest, exception: Any) -> HttpResponse:
    return respond(request, NOT_FOUND)


urlpatterns = [path(route.path.removeprefix("/"), view(route.page, route.methods), name=route.name)
               for route in ROUTES]
handler404 = not_found
