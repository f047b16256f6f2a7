"""The middleware's own endpoints (consent, events, privacy, stats) as one table every adapter serves.

An adapter looks the request path up; on a hit it reads at most
``max_body + 1`` bytes of the request body (enough to answer 413), builds the
request context and sends back the :class:`EndpointResponse` it is given
(a ``blocking`` one called in a thread where an event loop would wait).
The app never sees these requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .consent_endpoint import MAX_BODY, EndpointResponse, handle_consent
from .context import RequestContext
from .event_endpoint import EventEndpoint
from .privacy_endpoint import PrivacyEndpoint
from .stats_endpoint import handle_stats

if TYPE_CHECKING:
    from .personalizer import Personalizer


@dataclass(frozen=True, slots=True)
class Endpoint:
    max_body: int  # bytes of the request body it reads; 0 for none
    handle: Callable[[RequestContext, bytes], EndpointResponse]
    blocking: bool = False  # it does I/O (reads sinks): ASGI and async Django run it off the event loop


def endpoint_table(core: Personalizer) -> dict[str, Endpoint]:
    """Path -> endpoint for this middleware; empty when it is switched off."""
    if not core.enabled:
        return {}
    events = EventEndpoint(core)  # one per middleware: it holds the rate-limit counters
    table = {
        core.consent_path: Endpoint(MAX_BODY, lambda ctx, body: handle_consent(core, ctx, body)),
        events.path: Endpoint(events.max_body, events.handle),
    }
    privacy_path = core.config.privacy.endpoint
    if privacy_path:
        privacy = PrivacyEndpoint(core)
        table[privacy_path] = Endpoint(MAX_BODY, privacy.handle, blocking=True)
    if core.stats_path:
        table[core.stats_path] = Endpoint(0, lambda ctx, body: handle_stats(core, ctx.method))
    return table
