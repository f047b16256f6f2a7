"""``GET /_personalize/stats`` (only with ``debug: true``): the delivery counters per sink.

For operators checking a staging site or a load test: queued, sent, retried,
spooled and dropped, as :func:`personalize_mw.stats` returns them for this
middleware's sinks. Sink labels mask passwords; nothing about visitors is shown.
"""

from __future__ import annotations

import json

from .consent_endpoint import EndpointResponse
from .personalizer import Personalizer


def handle_stats(core: Personalizer, method: str) -> EndpointResponse:
    if method not in ("GET", "HEAD"):
        return EndpointResponse(405, [("allow", "GET"), ("content-type", "text/plain; charset=utf-8")],
                                b"GET the delivery counters here.\n")
    body = json.dumps({"sinks": core.queue.stats()}, indent=2, sort_keys=True).encode()
    headers = [("content-type", "application/json"), ("cache-control", "no-store")]
    return EndpointResponse(200, headers, b"" if method == "HEAD" else body)
