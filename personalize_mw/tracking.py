"""``identify()``, ``track()`` and ``context()``: what view code tells the middleware.

    personalize_mw.identify(request, user.id)                 # after a login or a form fill
    personalize_mw.track(request, "demo_requested", value=50)
    personalize_mw.context(request, first_name=user.first_name)  # merge fields for templates

``request`` is whatever the framework hands a view: a Starlette ``Request``,
Flask's ``request`` (or any werkzeug ``Request``: the WSGI environ is read),
a Django ``HttpRequest``, or a raw ASGI scope or WSGI environ. The
middleware must be installed around the view; it attaches the request's
state (see :mod:`personalize_mw.core.request_state`).

Both return whether a record will be written. A bad argument raises
(``TypeError``/``ValueError``): that is a bug in the view. A missing
middleware does not: it logs a warning once and returns ``False``, so a
misconfiguration never breaks a login.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from .core.events import Requested, check_name, check_props, check_value
from .core.identity import check_user_id
from .core.request_state import DJANGO_ATTRIBUTE, STATE_KEY, RequestState

log = logging.getLogger("personalize_mw")

_MISSING: Any = object()
_warned = False


def state_of(request: Any) -> RequestState | None:
    """The state the middleware attached to ``request``; None when disabled or not installed."""
    state = getattr(request, DJANGO_ATTRIBUTE, _MISSING)  # Django (checked first: ASGIRequest has a scope too)
    if state is _MISSING:
        for attribute in ("scope", "environ"):  # Starlette Request; werkzeug/Flask Request
            carrier = getattr(request, attribute, None)
            if isinstance(carrier, Mapping):
                state = carrier.get(STATE_KEY, _MISSING)
                break
        else:
            if isinstance(request, Mapping):  # a raw scope or environ
                state = request.get(STATE_KEY, _MISSING)
    if state is _MISSING:
        global _warned
        if not _warned:
            _warned = True
            log.warning("personalize_mw: identify()/track() on a request the middleware did not see; "
                        "nothing is recorded (is the middleware installed around this view?)")
        return None
    return state  # None: the middleware is there but enabled is false


def identify(request: Any, user_id: str | int, account: str | int | None = None) -> bool:
    """Link this visitor to a known user id (an ``identify`` record), and to an account if given.

    Recorded only with analytics and personalization consent, the two without
    which there is no visitor id to link; the user id and the account are stored
    hashed unless ``identity: {hash: false}`` (see :mod:`personalize_mw.core.identity`).
    The account (a company, a buying group) is also kept in the visitor's cookie,
    so that ``unit: account`` experiments show its people one arm.
    """
    user = check_user_id(user_id)
    group = check_user_id(account, "account") if account is not None else None
    state = state_of(request)
    if state is None:
        return False
    core = state.core
    consent = state.visitor().consent
    if not (consent.analytics and consent.personalization):
        return False
    stored_account = core.user_ids.stored(group) if group is not None else None
    if core.enrichment is not None:  # a CRM enricher starts fetching now, off the request path
        core.enrichment.identified(core.user_ids.hash(user), stored_account)  # keyed as profile.account is
    return state.add(Requested("identify", core.clock(), user=core.user_ids.stored(user), account=stored_account))


def context(request: Any, **fields: Any) -> bool:
    """Merge fields for this request's variant templates: ``visitor.traits.<name>``.

    Values are text (up to 256 characters), numbers, booleans or None; at most 20
    per request, over all calls (a later call's value for a name wins). They are
    used to render this response only: never written to the cookie, and to records
    only for the names ``merge_fields: {record: [...]}`` lists, with analytics consent.
    """
    given = check_props(fields, "merge fields")
    state = state_of(request)
    if state is None:
        return False
    if given:
        state.traits = check_props({**state.traits, **given}, "merge fields") if state.traits else given
    return True


def track(request: Any, name: str, value: float | None = None, props: dict[str, Any] | None = None) -> bool:
    """Record a conversion if ``name`` is a configured goal, else an ``event`` record.

    Recorded with or without consent; without it the record has no visitor id.
    ``props``: at most 20 flat entries (string keys; string, number, boolean or
    null values).
    """
    name, value, props = check_name(name), check_value(value), check_props(props)
    state = state_of(request)
    if state is None:
        return False
    return state.add(Requested("track", state.core.clock(), name=name, value=value, props=props))
